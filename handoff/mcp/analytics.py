"""The analytics of CONTRACT §10 over MCP: the `get_analytics` tool and the ``handoff://analytics`` resource.

Both read an `AnalyticsSource`: the engine's in-process folds in embedded mode, the analytics app's
HTTP endpoint in Kafka mode. Without a source (a Kafka adapter told of no analytics app) they
answer UNAVAILABLE.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec

from handoff.kernel.errors import NotPermitted, Unavailable
from handoff.kernel.types import AgentStr
from handoff.mcp.deps import Deps

ANALYTICS_URI = "handoff://analytics"


class AnalyticsSource(Protocol):
    """Where the analytics answers come from (the port this adapter owns)."""

    async def analytics(self, window: str, agent: str | None) -> dict[str, Any]:
        """The analytics of a window (``1h``, ``24h``, ``7d``), for everyone or one agent."""


class GetAnalyticsArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Arguments of get_analytics; the window defaults to 24h."""

    window: Literal["1h", "24h", "7d"] = "24h"
    agent: AgentStr | None = None


class GetAnalyticsResult(msgspec.Struct, kw_only=True, rename="camel"):
    """`get_analytics`: sessions by status, handoffs by type and outcome, per-target acceptance, entries, agents."""

    success: bool
    analytics: dict[str, Any]


async def read(deps: Deps, window: str = "24h", agent: str | None = None) -> dict[str, Any]:
    """The analytics body; UNAVAILABLE when this process has no analytics source.

    With auth on, an agent sees the figures of its own agent only (they name other agents and their
    sessions otherwise); auditors and operators see everyone's.
    """
    principal = deps.principal
    if principal is not None and principal.role == "agent":
        if agent is not None and agent != principal.agent:
            raise NotPermitted(f"{principal.agent!r} may read only its own analytics, not {agent!r}", field="agent")
        agent = principal.agent
    if deps.analytics is None:
        raise Unavailable("analytics are not available here: start `handoff analytics` and pass --analytics-url")
    return await deps.analytics.analytics(window, agent)


async def get_analytics(deps: Deps, args: GetAnalyticsArgs) -> GetAnalyticsResult:
    """`get_analytics`."""
    return GetAnalyticsResult(success=True, analytics=await read(deps, args.window, args.agent))
