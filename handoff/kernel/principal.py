"""The principal a command is decided for: an agent id and its role (CONTRACT §7)."""

from __future__ import annotations

from typing import Literal

import msgspec

from handoff.kernel.types import AgentId

Role = Literal["agent", "auditor", "operator"]
ROLES: tuple[str, ...] = ("agent", "auditor", "operator")
RESERVED_AGENT = "system"
"""The engine's own actor (expiry, retention): no principal and no acting field may use it."""


class Principal(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel"):
    """Who is calling, as authentication established it; absent (None) with ``--auth none``."""

    agent: AgentId
    role: Role = "agent"
