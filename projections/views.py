"""Read models. Each carries the session version it reflects, so re-applying an event is a no-op."""

from __future__ import annotations

import msgspec

from handoff.kernel.events import PackageRecord
from handoff.kernel.types import AgentId, ContextType, HandoffId, HandoffStatus, RequestType, SessionKey, SessionStatus


class SessionView(msgspec.Struct, kw_only=True, rename="camel", gc=False):
    """A session as `get_session` and `list_sessions` show it."""

    session_key: SessionKey
    agent_from: AgentId
    holder: AgentId
    agent_to: AgentId | None = None
    status: SessionStatus = "active"
    version: int = 0
    participants: list[AgentId] = []
    entry_count: int = 0
    last_sequence: int = 0
    context_counts: dict[str, int] = {}
    handoff_counts: dict[str, int] = {}
    created_at: str = ""
    updated_at: str = ""
    closed_at: str | None = None
    closed_by: AgentId | None = None
    close_reason: str | None = None
    metadata: dict[str, object] = {}
    members: list[AgentId] = []  # registering agent and every accepter: who may read it (handoff.kernel.access)
    retention_policy: str = "standard"
    # Filled at read time from updatedAt, the policy and the clock (projections.lifecycle), never stored:
    last_activity_at: str | None = None
    expires_at: str | None = None
    dormant: bool = False
    erased: bool = False  # its data key is destroyed: metadata and every entry's content are gone (CONTRACT §8)


class ContextEntryView(msgspec.Struct, kw_only=True, rename="camel", gc=False):
    """One context entry; written once, never changed."""

    sequence_number: int
    context_type: ContextType
    content: str
    content_length: int
    agent: AgentId
    created_at: str
    version: int
    event_id: str
    tokens: int = 0
    metadata: dict[str, object] = {}
    erased: bool = False  # content and metadata are gone with the session's data key (CONTRACT §8)


class TaskItem(msgspec.Struct, kw_only=True, rename="camel", gc=False):
    """An open task taken from a ``task`` entry."""

    task_id: str
    text: str
    sequence_number: int


class SummaryView(msgspec.Struct, kw_only=True, rename="camel", gc=False):
    """The running, bounded summary of a session's context (see `projections.summary`)."""

    session_key: SessionKey
    version: int = 0
    total_entries: int = 0
    counts: dict[str, int] = {}
    participants: list[AgentId] = []
    first_message: str | None = None
    last_message: str | None = None
    decisions: list[str] = []
    open_tasks: list[TaskItem] = []
    handoffs: int = 0
    last_activity: str = ""
    erased: bool = False  # the texts taken from entries are gone with the session's data key


class HandoffView(msgspec.Struct, kw_only=True, rename="camel", gc=False):
    """A handoff with the package recorded when it was requested."""

    handoff_id: HandoffId
    session_key: SessionKey
    source_agent: AgentId
    target_agent: AgentId
    request_type: RequestType
    status: HandoffStatus
    package: PackageRecord
    sequence_number: int
    request_data: dict[str, object] = {}
    accepted_by: AgentId | None = None
    result: dict[str, object] | None = None
    reason: str | None = None
    created_at: str = ""
    updated_at: str = ""
    version: int = 0
    erased: bool = False  # requestData, result and the package's summary and entries are gone (CONTRACT §8)
