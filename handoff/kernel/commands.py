"""Commands: what a caller asks the single writer of a session to do, and the arguments they are made of.

Each write tool's arguments are a struct here (`RegisterSessionArgs` …), and its command is that
struct with a tag, so every field and its shape is written once, for the tool's input schema and
for the command record alike. A handoff tool names only its handoff: its command adds the session
the handoff belongs to (`for_session`), which the adapter looks up before it builds the command.

Arguments and commands forbid unknown fields, so a client's typo fails instead of being silently
ignored. Every write tool maps to exactly one command and, when accepted, one event, except
`AppendContextBatch` (`analyze_codebase`): one command that appends several entries, all or none.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from handoff.kernel.principal import Principal
from handoff.kernel.types import (
    AcceptWithin,
    AgentId,
    AgentStr,
    ContextType,
    ExpectedVersion,
    HandoffIdStr,
    IdempotencyKey,
    JsonObject,
    Reason,
    RequestType,
    RetentionPolicy,
    SessionKeyStr,
)

# The acting agent of a write tool: required with --auth none; with auth on it defaults to the principal's
# own agent (the adapter fills it in), and if given must be that agent. A command always carries it.
Acting = Annotated[
    AgentStr, msgspec.Meta(description="the acting agent: required with --auth none, else your own (the default)")
]
Requester = Annotated[AgentStr, msgspec.Meta(description="the requester; if given, the session's holder")]


class WriteArgs(msgspec.Struct, gc=False, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """What every write takes: optimistic concurrency and retry safety."""

    expected_version: ExpectedVersion | None = None
    idempotency_key: IdempotencyKey | None = None


class RegisterSessionArgs(WriteArgs, frozen=True, kw_only=True):
    """Arguments of register_session."""

    session_key: SessionKeyStr
    agent_from: Acting | None = None
    metadata: JsonObject | None = None
    retention_policy: RetentionPolicy | None = None  # standard (the default), extended or short: CONTRACT §8


class UpdateContextArgs(WriteArgs, frozen=True, kw_only=True):
    """Arguments of update_context; without agent, the entry is attributed to the session holder."""

    session_key: SessionKeyStr
    context_type: ContextType
    content: str
    metadata: JsonObject | None = None
    agent: AgentStr | None = None


class RequestHandoffArgs(WriteArgs, frozen=True, kw_only=True):
    """Arguments of request_handoff; tokenBudget is 100-200000 (default 4000)."""

    session_key: SessionKeyStr
    target_agent: AgentStr
    request_type: RequestType = "context_transfer"
    request_data: JsonObject | None = None
    token_budget: int | None = None
    agent: Requester | None = None
    accept_within: AcceptWithin | None = None  # seconds it may stay pending (default 86,400), then it expires


class CloseSessionArgs(WriteArgs, frozen=True, kw_only=True):
    """Arguments of close_session."""

    session_key: SessionKeyStr
    agent: Acting | None = None
    reason: Reason | None = None


class AcceptHandoffArgs(WriteArgs, frozen=True, kw_only=True):
    """Arguments of accept_handoff."""

    handoff_id: HandoffIdStr
    agent: Acting | None = None


class CompleteHandoffArgs(WriteArgs, frozen=True, kw_only=True):
    """Arguments of complete_handoff."""

    handoff_id: HandoffIdStr
    agent: Acting | None = None
    result: JsonObject | None = None


class RejectHandoffArgs(WriteArgs, frozen=True, kw_only=True):
    """Arguments of reject_handoff."""

    handoff_id: HandoffIdStr
    agent: Acting | None = None
    reason: Reason


class CancelHandoffArgs(WriteArgs, frozen=True, kw_only=True):
    """Arguments of cancel_handoff."""

    handoff_id: HandoffIdStr
    agent: Acting | None = None
    reason: Reason | None = None


class RegisterSession(RegisterSessionArgs, frozen=True, kw_only=True, tag_field="command", tag="RegisterSession"):
    """Start a session owned by `agent_from`."""

    agent_from: AgentStr
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class AppendContext(UpdateContextArgs, frozen=True, kw_only=True, tag_field="command", tag="AppendContext"):
    """Append one context entry (the `update_context` tool)."""

    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class RequestHandoff(RequestHandoffArgs, frozen=True, kw_only=True, tag_field="command", tag="RequestHandoff"):
    """Hand the session to `target_agent`."""

    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class CloseSession(CloseSessionArgs, frozen=True, kw_only=True, tag_field="command", tag="CloseSession"):
    """Close the session."""

    agent: AgentStr
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


# A handoff command is its tool's arguments addressed to the handoff's session.


class AcceptHandoff(AcceptHandoffArgs, frozen=True, kw_only=True, tag_field="command", tag="AcceptHandoff"):
    """Accept a pending handoff."""

    session_key: SessionKeyStr
    agent: AgentStr
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class CompleteHandoff(CompleteHandoffArgs, frozen=True, kw_only=True, tag_field="command", tag="CompleteHandoff"):
    """Complete an accepted handoff."""

    session_key: SessionKeyStr
    agent: AgentStr
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class RejectHandoff(RejectHandoffArgs, frozen=True, kw_only=True, tag_field="command", tag="RejectHandoff"):
    """Decline a pending handoff."""

    session_key: SessionKeyStr
    agent: AgentStr
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class CancelHandoff(CancelHandoffArgs, frozen=True, kw_only=True, tag_field="command", tag="CancelHandoff"):
    """Withdraw a requested handoff."""

    session_key: SessionKeyStr
    agent: AgentStr
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class ContextItem(msgspec.Struct, gc=False, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """One entry of an `AppendContextBatch`."""

    context_type: ContextType
    content: str
    metadata: JsonObject | None = None


class AppendContextBatch(WriteArgs, frozen=True, kw_only=True, tag_field="command", tag="AppendContextBatch"):
    """Append several context entries at once (`analyze_codebase`): one event each, all or none.

    Decided as one command, so the entries take consecutive sequence numbers and versions, and an
    idempotent retry or a refusal covers them all. Without `agent`, they are attributed as an
    `AppendContext` would be (the principal's agent, else the session holder).
    """

    session_key: SessionKeyStr
    entries: list[ContextItem]
    agent: AgentStr | None = None
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class ExpireHandoff(WriteArgs, frozen=True, kw_only=True, tag_field="command", tag="ExpireHandoff"):
    """Issued by the engine's own sweeper, never by a client tool."""

    session_key: SessionKeyStr
    handoff_id: HandoffIdStr
    reason: Reason = "expired"
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class ExpireSession(WriteArgs, frozen=True, kw_only=True, tag_field="command", tag="ExpireSession"):
    """Issued by the engine's own sweeper, never by a client tool."""

    session_key: SessionKeyStr
    reason: Reason = "expired"
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


class EraseSession(WriteArgs, frozen=True, kw_only=True, tag_field="command", tag="EraseSession"):
    """Destroy a session's data key: issued by retention (actor ``system``) or `handoff purge` (an operator)."""

    session_key: SessionKeyStr
    reason: Reason
    actor: AgentStr = AgentId("system")
    principal: Principal | None = None  # who the adapter authenticated (None with --auth none), see kernel.access


Command = (
    RegisterSession
    | AppendContext
    | RequestHandoff
    | AcceptHandoff
    | CompleteHandoff
    | RejectHandoff
    | CancelHandoff
    | CloseSession
    | ExpireHandoff
    | ExpireSession
    | AppendContextBatch
    | EraseSession
)

SessionArgs = RegisterSessionArgs | UpdateContextArgs | RequestHandoffArgs | CloseSessionArgs
HandoffArgs = AcceptHandoffArgs | CompleteHandoffArgs | RejectHandoffArgs | CancelHandoffArgs

_COMMAND_OF: dict[type[WriteArgs], type[Any]] = {
    RegisterSessionArgs: RegisterSession,
    UpdateContextArgs: AppendContext,
    RequestHandoffArgs: RequestHandoff,
    CloseSessionArgs: CloseSession,
    AcceptHandoffArgs: AcceptHandoff,
    CompleteHandoffArgs: CompleteHandoff,
    RejectHandoffArgs: RejectHandoff,
    CancelHandoffArgs: CancelHandoff,
}


def command_of(args: SessionArgs) -> Command:
    """The command of a write tool's arguments that name their session."""
    command: Command = _COMMAND_OF[type(args)](**msgspec.structs.asdict(args))
    return command


def for_session(args: HandoffArgs, session_key: str) -> Command:
    """The command of a handoff tool's arguments, addressed to the session its handoff belongs to."""
    command: Command = _COMMAND_OF[type(args)](session_key=session_key, **msgspec.structs.asdict(args))
    return command


_fingerprint_encoder = msgspec.json.Encoder(order="sorted")


def fingerprint(command: Command) -> bytes:
    """Canonical bytes of the command's arguments, minus its idempotency key, for retry matching."""
    body: dict[str, Any] = msgspec.to_builtins(command)
    body.pop("idempotencyKey", None)
    body.pop("expectedVersion", None)
    if body.get("principal", 0) is None:  # fingerprints of commands without one stay what they were
        del body["principal"]
    return _fingerprint_encoder.encode(body)
