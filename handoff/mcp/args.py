"""The read tools' arguments (one msgspec struct per tool, camelCase, unknown fields refused) and JSON schemas.

The write tools' arguments are the kernel's (`handoff.kernel.commands`), the structs their commands
are made of. Shapes (types, patterns, enumerations) are checked by typed decoding, with the kernel's
constrained types; lengths and sizes are checked by `handoff.kernel.limits` so that they stay
configurable and report LIMIT_EXCEEDED.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from handoff.kernel.types import AgentStr, HandoffIdStr, HandoffStatus, SessionKeyStr, SessionStatus

PageLimit = Annotated[int, msgspec.Meta(ge=1, description="page size (at most 1000)")]


class _Args(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    pass


class GetHandoffArgs(_Args, frozen=True, kw_only=True):
    """Arguments of get_handoff."""

    handoff_id: HandoffIdStr


class GetSessionArgs(_Args, frozen=True, kw_only=True):
    """Arguments of get_session."""

    session_key: SessionKeyStr
    as_of_version: (
        Annotated[int, msgspec.Meta(description="read the session as of this version (1..current)")] | None
    ) = None


class GetContextArgs(_Args, frozen=True, kw_only=True):
    """Arguments of get_context; limit defaults to 100, at most 1000."""

    session_key: SessionKeyStr
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
