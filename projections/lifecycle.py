"""The read-time lifecycle fields of a session view (CONTRACT §8): last activity, expiry, dormancy."""

from __future__ import annotations

import msgspec

from handoff.kernel.lifecycle import is_dormant, session_expires_at
from projections.views import SessionView


def with_lifecycle(view: SessionView, now: str) -> SessionView:
    """The view with ``lastActivityAt``, ``expiresAt`` (active sessions only) and ``dormant`` as of `now`.

    A copy: the stored and cached views stay as the folds left them, so reads never change them.
    """
    at = view.updated_at
    if not at:
        return view
    active = view.status == "active"
    return msgspec.structs.replace(
        view,
        last_activity_at=at,
        expires_at=session_expires_at(view.retention_policy, at) if active else None,
        dormant=active and is_dormant(view.retention_policy, at, now),
    )
