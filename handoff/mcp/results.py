"""Tool results: the structs each tool returns (camelCase on the wire) and their output schemas.

Every result has ``success``; a failure is ``{"success": false, "code", "error", ...details}``, so
each output schema requires only ``success`` at its root and the failure shape also validates.
"""

from __future__ import annotations

from typing import Any

import msgspec

from handoff.kernel.package import PackageEntry
from handoff.mcp.args import json_schema
from projections.views import ContextEntryView, SessionView, SummaryView


class _Out(msgspec.Struct, kw_only=True, rename="camel"):
    pass


class SessionRef(_Out, kw_only=True):
    """The session as a write left it: enough to pass ``expectedVersion`` next time."""

    session_key: str
    status: str
    version: int


class SessionOut(_Out, kw_only=True, omit_defaults=True):
    """A session as a write result shows it (from the write's receipt)."""

    session_key: str
    agent_from: str
    holder: str
    status: str
    version: int
    created_at: str
    updated_at: str
    metadata: dict[str, Any]
    closed_by: str | None = None
    close_reason: str | None = None
    cancelled_handoffs: list[str] | None = None


class ContextEntryOut(_Out, kw_only=True):
    """The entry `update_context` appended."""

    sequence_number: int
    context_type: str
    content_length: int
    agent: str
    created_at: str


class PackageRef(_Out, kw_only=True):
    """The recorded range, budget and hash of a handoff package."""

    from_sequence: int | None
    to_sequence: int | None
    token_budget: int
    estimated_tokens: int
    sha256: str
    entry_count: int


class HandoffOut(_Out, kw_only=True, omit_defaults=True):
    """A handoff; fields a write's receipt does not carry are left out of handoff write results."""

    handoff_id: str
    session_key: str
    source_agent: str
    target_agent: str
    request_type: str
    status: str
    created_at: str
    updated_at: str
    context_summary: str | None = None
    context_entries: int | None = None
    request_data: dict[str, Any] | None = None
    accepted_by: str | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None
    package: PackageRef | None = None


class PackageOut(_Out, kw_only=True):
    """A handoff package exactly as recorded when it was requested."""

    summary: str
    key_points: list[str]
    participants: list[str]
    entries: list[PackageEntry]
    from_sequence: int | None
    to_sequence: int | None
    token_budget: int
    estimated_tokens: int
    sha256: str


class SummaryOut(SummaryView, kw_only=True, rename="camel"):
    """The running summary, with its one-paragraph rendering and key points."""

    text: str = ""
    key_points: list[str] = []


class RegisterSessionResult(_Out, kw_only=True):
    """`register_session`."""

    success: bool
    session: SessionOut


class UpdateContextResult(_Out, kw_only=True):
    """`update_context`."""

    success: bool
    context_entry: ContextEntryOut
    session: SessionRef


class HandoffResult(_Out, kw_only=True):
    """`request_handoff`, `accept_handoff`, `complete_handoff`, `reject_handoff`, `cancel_handoff`."""

    success: bool
    handoff: HandoffOut
    session: SessionRef


class CloseSessionResult(_Out, kw_only=True):
    """`close_session`."""

    success: bool
    session: SessionOut


class GetHandoffResult(_Out, kw_only=True):
    """`get_handoff`."""

    success: bool
    handoff: HandoffOut
    package: PackageOut


class GetSessionResult(_Out, kw_only=True):
    """`get_session`."""

    success: bool
    session: SessionView


class GetContextResult(_Out, kw_only=True):
    """`get_context`."""

    success: bool
    session_key: str
    version: int
    entries: list[ContextEntryView]
    next_after_sequence: int | None
    summary: SummaryOut


class ListSessionsResult(_Out, kw_only=True):
    """`list_sessions`."""

    success: bool
    sessions: list[SessionView]
    next_cursor: str | None


class ListHandoffsResult(_Out, kw_only=True):
    """`list_handoffs`."""

    success: bool
    handoffs: list[HandoffOut]
    next_cursor: str | None


def output_schema(struct: type[Any]) -> dict[str, Any]:
    """The result's schema, relaxed at the root so that the failure shape validates too."""
    schema = json_schema(struct)
    schema["required"] = ["success"]
    schema["properties"]["code"] = {"type": "string", "description": "error code (failures only)"}
    schema["properties"]["error"] = {"type": "string", "description": "what went wrong (failures only)"}
    return schema
