"""What every MCP handler is given: the ports, the limits, the metrics and the subscription notifier."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import msgspec

from handoff.kernel.commands import HANDOFF_COMMANDS, Command
from handoff.kernel.errors import HandoffNotFound
from handoff.kernel.limits import check_limits
from handoff.kernel.principal import Principal
from handoff.kernel.types import Limits
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from handoff.ports import CommandBus, Outcome, ReadModel


@dataclass(frozen=True)
class Deps:
    """The adapter's dependencies, built by a composition root and yielded by the server's lifespan."""

    commands: CommandBus
    reads: ReadModel
    limits: Limits
    metrics: Metrics
    notifier: Notifier
    principal: Principal | None = None  # the caller, set per call when auth is on (handoff.mcp.auth)
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
        """Check the limits here (so an over-limit call never travels), then submit.

        A handoff command names only its handoff: its session key is looked up in the read model
        (HANDOFF_NOT_FOUND if the handoff is unknown) and the command is submitted to that session.
        """
        if self.principal is not None:
            command = msgspec.structs.replace(command, principal=self.principal)
        check_limits(command, self.limits)
        if isinstance(command, HANDOFF_COMMANDS):
            view = await self.reads.handoff(command.handoff_id)
            if view is None:
                hid = command.handoff_id
                raise HandoffNotFound(f"handoff {hid!r} does not exist", handoffId=hid)
            command = _with_session(command, view.session_key)
        return await self.commands.submit(command)


def _with_session(command: Command, session_key: str) -> Command:
    return msgspec.structs.replace(command, session_key=session_key)
