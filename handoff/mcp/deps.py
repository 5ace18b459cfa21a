"""What every MCP handler is given: the ports, the limits, the metrics, the subscription notifier, the health checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import msgspec

from handoff.health import Health
from handoff.kernel.commands import Command, HandoffArgs, for_session
from handoff.kernel.errors import HandoffNotFound
from handoff.kernel.limits import check_limits
from handoff.kernel.principal import Principal
from handoff.kernel.text import normalise_agent_name
from handoff.kernel.times import format_time
from handoff.kernel.types import Limits
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from handoff.ports import CommandBus, Operations, Outcome, ReadModel

T = TypeVar("T", bound=msgspec.Struct)

if TYPE_CHECKING:
    from handoff.mcp.analytics import AnalyticsSource


def wall_clock() -> str:
    """The time now, in the kernel's format (the default clock dormancy is judged by)."""
    return format_time(datetime.now(UTC))


@dataclass(frozen=True)
class Deps:
    """The adapter's dependencies, built by a composition root and yielded by the server's lifespan."""

    commands: CommandBus
    reads: ReadModel
    limits: Limits
    metrics: Metrics
    notifier: Notifier
    health: Health = field(default_factory=Health)
    analytics: AnalyticsSource | None = None  # None: get_analytics answers UNAVAILABLE
    principal: Principal | None = None  # the caller, set per call when auth is on (handoff.mcp.auth)
    clock: Callable[[], str] = wall_clock  # what dormancy is judged by at read time
    codebase_roots: tuple[str, ...] = ()  # analyze_codebase reads only under these (--codebase-root); none: off
    operations: Operations | None = None  # the jobs and configuration (CONTRACT §9); None: UNAVAILABLE
    _as: dict[Principal, Deps] = field(default_factory=dict, compare=False, repr=False)

    def acting_as(self, principal: Principal) -> Deps:
        """These dependencies for one principal's calls (built once per principal: this runs on every call)."""
        deps = self._as.get(principal)
        if deps is None:
            if len(self._as) >= 10_000:
                self._as.clear()
            deps = self._as[principal] = dataclasses.replace(self, principal=principal, _as={})
        return deps

    async def submit(self, command: Command) -> Outcome:
        """Check the limits here (so an over-limit call never travels), then submit."""
        command = normalised(command)
        if self.principal is not None:
            command = msgspec.structs.replace(command, principal=self.principal)
        check_limits(command, self.limits)
        return await self.commands.submit(command)

    async def submit_to_handoff(self, args: HandoffArgs) -> Outcome:
        """Submit a handoff tool's command to the session of its handoff.

        The arguments name only the handoff: after their limits are checked, its session key is
        looked up in the read model (HANDOFF_NOT_FOUND if the handoff is unknown).
        """
        args = normalised(args)
        check_limits(args, self.limits)
        view = await self.reads.handoff(args.handoff_id)
        if view is None:
            hid = args.handoff_id
            raise HandoffNotFound(f"handoff {hid!r} does not exist", handoffId=hid)
        command = for_session(args, view.session_key)
        if self.principal is not None:
            command = msgspec.structs.replace(command, principal=self.principal)
        return await self.commands.submit(command)


_AGENT_FIELDS = ("agent_from", "agent", "target_agent")


def normalised(command: T) -> T:
    """The command with its agent names in NFC, so that names which look alike are one name."""
    changes = {}
    for name in _AGENT_FIELDS:
        value = getattr(command, name, None)
        if isinstance(value, str) and not value.isascii():
            changes[name] = normalise_agent_name(value)
    return msgspec.structs.replace(command, **changes) if changes else command
