"""What every MCP handler is given: the ports, the limits, the metrics and the subscription notifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from handoff.kernel.commands import Command, HandoffArgs, for_session
from handoff.kernel.errors import HandoffNotFound
from handoff.kernel.limits import check_limits
from handoff.kernel.types import Limits
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from handoff.ports import CommandBus, Outcome, ReadModel

if TYPE_CHECKING:
    from handoff.mcp.analytics import AnalyticsSource


@dataclass(frozen=True)
class Deps:
    """The adapter's dependencies, built by a composition root and yielded by the server's lifespan."""

    commands: CommandBus
    reads: ReadModel
    limits: Limits
    metrics: Metrics
    notifier: Notifier
    analytics: AnalyticsSource | None = None  # None: get_analytics answers UNAVAILABLE

    async def submit(self, command: Command) -> Outcome:
        """Check the limits here (so an over-limit call never travels), then submit."""
        check_limits(command, self.limits)
        return await self.commands.submit(command)

    async def submit_to_handoff(self, args: HandoffArgs) -> Outcome:
        """Submit a handoff tool's command to the session of its handoff.

        The arguments name only the handoff: after their limits are checked, its session key is
        looked up in the read model (HANDOFF_NOT_FOUND if the handoff is unknown).
        """
        check_limits(args, self.limits)
        view = await self.reads.handoff(args.handoff_id)
        if view is None:
            hid = args.handoff_id
            raise HandoffNotFound(f"handoff {hid!r} does not exist", handoffId=hid)
        return await self.commands.submit(for_session(args, view.session_key))
