"""Expiry and dormancy (CONTRACT §8): retention policies, when a session or a handoff falls due, what a sweep issues.

Pure: every function takes the time it judges by (ISO 8601 UTC, as `Ctx.now`), so a sweep is
deterministic given the log and the clock. A session's last activity is its last write (the state's
``updated_at``): every write moves ``expiresAt`` to that plus the policy's active TTL without any
bookkeeping of its own. Dormancy is a read-time flag, never an event.
"""

from __future__ import annotations

from datetime import timedelta

from handoff.kernel.commands import Command, ExpireHandoff, ExpireSession
from handoff.kernel.state import SessionState
from handoff.kernel.times import parse_time, plus_seconds

_HOUR = 3600
ACTIVE_TTL: dict[str, int] = {"standard": 24 * _HOUR, "extended": 72 * _HOUR, "short": 4 * _HOUR}
DORMANT_AFTER: dict[str, int] = {"standard": 2 * _HOUR, "extended": 6 * _HOUR, "short": 1 * _HOUR}


def session_expires_at(policy: str, last_activity_at: str) -> str:
    """When a session whose last write was at `last_activity_at` expires."""
    return plus_seconds(last_activity_at, ACTIVE_TTL.get(policy, ACTIVE_TTL["standard"]))


def is_dormant(policy: str, last_activity_at: str, now: str) -> bool:
    """Whether a session has seen no write for its policy's dormancy period."""
    idle = parse_time(now) - parse_time(last_activity_at)
    return idle >= timedelta(seconds=DORMANT_AFTER.get(policy, DORMANT_AFTER["standard"]))


def next_due(state: SessionState) -> str | None:
    """The earliest time something of an active session falls due (its expiry, a pending handoff's), or None."""
    if state.status != "active" or not state.updated_at:
        return None
    due = session_expires_at(state.retention_policy, state.updated_at)
    for handoff in state.handoffs.values():
        if handoff.status == "pending" and handoff.expires_at and handoff.expires_at < due:
            due = handoff.expires_at
    return due


def due_commands(state: SessionState, now: str) -> list[Command]:
    """What a sweep at `now` issues for a session: its expiry, else the expiry of each overdue pending handoff.

    Each command carries the version it was judged at, so a write that lands first refuses it
    (VERSION_CONFLICT) and a session already expired or closed refuses it (SESSION_NOT_ACTIVE):
    nothing expires twice, and nothing that a write just extended expires.
    """
    if state.status != "active" or not state.updated_at:
        return []
    key, version = state.session_key, state.version
    if session_expires_at(state.retention_policy, state.updated_at) <= now:
        return [ExpireSession(session_key=key, expected_version=version, reason="no activity within its retention")]
    overdue: list[Command] = [
        ExpireHandoff(session_key=key, handoff_id=h.handoff_id, expected_version=version, reason="not accepted in time")
        for h in state.handoffs.values()
        if h.status == "pending" and h.expires_at and h.expires_at <= now
    ]
    return overdue[:1]  # one per sweep of the session: the next is judged at the version the first left
