"""Tool arguments: one msgspec struct per tool, camelCase on the wire, unknown fields refused.

Shapes (types, patterns, enumerations) are checked here by typed decoding; lengths and sizes are
checked by `handoff.kernel.limits` so that they stay configurable and report LIMIT_EXCEEDED.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from handoff.kernel.types import (
    AgentStr,
    ContextType,
    HandoffStatus,
    JsonObject,
    KeyStr,
    Reason,
    RequestType,
    SessionStatus,
)

Version = Annotated[int, msgspec.Meta(ge=0, description="the session version the caller last saw")]
IdemKey = Annotated[str, msgspec.Meta(min_length=1, description="retry key (at most 128 characters)")]
Acting = Annotated[
    AgentStr, msgspec.Meta(description="the acting agent: required with --auth none, else your own (the default)")
]
PageLimit = Annotated[int, msgspec.Meta(ge=1, description="page size (at most 1000)")]


class _Args(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    pass


class _WriteArgs(_Args, frozen=True, kw_only=True):
    expected_version: Version | None = None
    idempotency_key: IdemKey | None = None


class RegisterSessionArgs(_WriteArgs, frozen=True, kw_only=True):
    """Arguments of register_session."""

    session_key: KeyStr
    agent_from: Acting | None = None
    metadata: JsonObject | None = None


class UpdateContextArgs(_WriteArgs, frozen=True, kw_only=True):
    """Arguments of update_context; without agent, the entry is attributed to the session holder."""

    session_key: KeyStr
    context_type: ContextType
    content: str
    metadata: JsonObject | None = None
    agent: AgentStr | None = None


class RequestHandoffArgs(_WriteArgs, frozen=True, kw_only=True):
    """Arguments of request_handoff; tokenBudget is 100-200000 (default 4000)."""

    session_key: KeyStr
    target_agent: AgentStr
    request_type: RequestType = "context_transfer"
    request_data: JsonObject | None = None
    token_budget: int | None = None
    agent: Annotated[AgentStr, msgspec.Meta(description="the requester; if given, the session's holder")] | None = None


class AcceptHandoffArgs(_WriteArgs, frozen=True, kw_only=True):
    """Arguments of accept_handoff."""

    handoff_id: KeyStr
    agent: Acting | None = None


class CompleteHandoffArgs(_WriteArgs, frozen=True, kw_only=True):
    """Arguments of complete_handoff."""

    handoff_id: KeyStr
    agent: Acting | None = None
    result: JsonObject | None = None


class RejectHandoffArgs(_WriteArgs, frozen=True, kw_only=True):
    """Arguments of reject_handoff."""

    handoff_id: KeyStr
    agent: Acting | None = None
    reason: Reason


class CancelHandoffArgs(_WriteArgs, frozen=True, kw_only=True):
    """Arguments of cancel_handoff."""

    handoff_id: KeyStr
    agent: Acting | None = None
    reason: Reason | None = None


class CloseSessionArgs(_WriteArgs, frozen=True, kw_only=True):
    """Arguments of close_session."""

    session_key: KeyStr
    agent: Acting | None = None
    reason: Reason | None = None


class GetHandoffArgs(_Args, frozen=True, kw_only=True):
    """Arguments of get_handoff."""

    handoff_id: KeyStr


class GetSessionArgs(_Args, frozen=True, kw_only=True):
    """Arguments of get_session."""

    session_key: KeyStr
    as_of_version: (
        Annotated[int, msgspec.Meta(description="read the session as of this version (1..current)")] | None
    ) = None


class GetContextArgs(_Args, frozen=True, kw_only=True):
    """Arguments of get_context; limit defaults to 100, at most 1000."""

    session_key: KeyStr
    after_sequence: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: PageLimit = 100
    as_of_version: int | None = None


class ListSessionsArgs(_Args, frozen=True, kw_only=True):
    """Arguments of list_sessions; limit defaults to 50, at most 1000."""

    agent: AgentStr | None = None
    status: SessionStatus | None = None
    limit: PageLimit = 50
    cursor: str | None = None


class ListHandoffsArgs(_Args, frozen=True, kw_only=True):
    """Arguments of list_handoffs; limit defaults to 50, at most 1000."""

    target_agent: AgentStr | None = None
    source_agent: AgentStr | None = None
    status: HandoffStatus | None = None
    limit: PageLimit = 50
    cursor: str | None = None


def _any_value(kind: type[Any]) -> dict[str, Any]:
    if kind is object:
        return {"description": "any JSON value"}  # views type free-form JSON values as `object`
    raise NotImplementedError(f"no JSON schema for {kind!r}")


def json_schema(struct: type[Any]) -> dict[str, Any]:
    """The JSON schema of a struct with its root inlined, so the root has ``"type": "object"``."""
    schema: dict[str, Any] = msgspec.json.schema(struct, schema_hook=_any_value)
    ref = schema.get("$ref")
    if ref is None:
        return schema
    defs: dict[str, Any] = schema.pop("$defs")
    root: dict[str, Any] = defs.pop(ref.rsplit("/", 1)[-1])
    if defs:
        root["$defs"] = defs
    return root
