"""Commands: what a caller asks the single writer of a session to do.

Commands forbid unknown fields, so a client's typo fails instead of being silently ignored.
Every MCP write tool maps to exactly one command and, when accepted, to exactly one event.
"""

from __future__ import annotations

from typing import Any

import msgspec

from handoff.kernel.types import AgentStr, ContextType, JsonObject, KeyStr, Reason, RequestType


class _Command(
    msgspec.Struct,
    gc=False,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    rename="camel",
    tag_field="command",
):
    session_key: KeyStr
    expected_version: int | None = None
    idempotency_key: str | None = None


class RegisterSession(_Command, frozen=True, tag="RegisterSession"):
    """Start a session owned by `agent_from`."""

    agent_from: AgentStr
    metadata: JsonObject | None = None


class AppendContext(_Command, frozen=True, tag="AppendContext"):
    """Append one context entry (the `update_context` tool)."""

    context_type: ContextType
    content: str
    metadata: JsonObject | None = None
    agent: AgentStr | None = None


class RequestHandoff(_Command, frozen=True, tag="RequestHandoff"):
    """Hand the session to `target_agent`."""

    target_agent: AgentStr
    request_type: RequestType = "context_transfer"
    request_data: JsonObject | None = None
    token_budget: int | None = None


class AcceptHandoff(_Command, frozen=True, tag="AcceptHandoff"):
    """Accept a pending handoff."""

    handoff_id: KeyStr
    agent: AgentStr


class CompleteHandoff(_Command, frozen=True, tag="CompleteHandoff"):
    """Complete an accepted handoff."""

    handoff_id: KeyStr
    agent: AgentStr
    result: JsonObject | None = None


class RejectHandoff(_Command, frozen=True, tag="RejectHandoff"):
    """Decline a pending handoff."""

    handoff_id: KeyStr
    agent: AgentStr
    reason: Reason


class CancelHandoff(_Command, frozen=True, tag="CancelHandoff"):
    """Withdraw a requested handoff."""

    handoff_id: KeyStr
    agent: AgentStr
    reason: Reason | None = None


class CloseSession(_Command, frozen=True, tag="CloseSession"):
    """Close the session."""

    agent: AgentStr
    reason: Reason | None = None


class ExpireHandoff(_Command, frozen=True, tag="ExpireHandoff"):
    """Issued by the engine's own sweeper, never by a client tool."""

    handoff_id: KeyStr
    reason: Reason = "expired"


class ExpireSession(_Command, frozen=True, tag="ExpireSession"):
    """Issued by the engine's own sweeper, never by a client tool."""

    reason: Reason = "expired"


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
)

HANDOFF_COMMANDS = (AcceptHandoff, CompleteHandoff, RejectHandoff, CancelHandoff, ExpireHandoff)

_fingerprint_encoder = msgspec.json.Encoder(order="sorted")


def fingerprint(command: Command) -> bytes:
    """Canonical bytes of the command's arguments, minus its idempotency key, for retry matching."""
    body: dict[str, Any] = msgspec.to_builtins(command)
    body.pop("idempotencyKey", None)
    body.pop("expectedVersion", None)
    return _fingerprint_encoder.encode(body)
