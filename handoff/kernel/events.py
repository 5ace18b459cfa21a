"""Events: the facts a session's stream records, and the envelope that chains them.

Event payloads tolerate unknown fields so an older reader skips what a newer writer added. The
envelope (ids, per-session version, type, schema version, time, actor, hashes) is a separate struct:
on the wire ``type`` and ``schemaVersion`` sit beside ``data``, and ``hash`` seals everything else
together with ``prevHash``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from handoff.kernel.types import (
    DEFAULT_ACCEPT_WITHIN,
    AgentId,
    ContextType,
    HandoffId,
    JsonObject,
    RequestType,
    RetentionPolicy,
    SessionKey,
)


class _Event(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel"):
    SCHEMA_VERSION: ClassVar[int] = 1


class SessionRegistered(_Event, frozen=True):
    """A session was started by `agent_from` (context entry 1)."""

    agent_from: AgentId
    metadata: JsonObject = {}
    sequence_number: int = 1
    retention_policy: RetentionPolicy = "standard"  # added with CONTRACT §8: older records decode as standard
    encrypted: bytes | None = None  # erasable fields under the session's data key (handoff.kernel.erasure)


class ContextAppended(_Event, frozen=True):
    """v2 added ``tokens`` (the entry's token estimate, see `handoff.kernel.package`); v1 records are upcast."""

    SCHEMA_VERSION: ClassVar[int] = 2

    sequence_number: int
    context_type: ContextType
    content: str
    agent: AgentId
    tokens: int
    metadata: JsonObject = {}
    encrypted: bytes | None = None  # content and metadata under the session's data key (handoff.kernel.erasure)


class PackageRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel"):
    """What a handoff package was, recorded at request time; entries are re-read by their range."""

    from_sequence: int | None
    to_sequence: int | None
    entry_count: int
    token_budget: int
    estimated_tokens: int
    sha256: str
    summary: str
    key_points: list[str] = []
    participants: list[AgentId] = []


class HandoffRequested(_Event, frozen=True):
    """A handoff was requested; its package is recorded (context entry for the request)."""

    handoff_id: HandoffId
    sequence_number: int
    source_agent: AgentId
    target_agent: AgentId
    request_type: RequestType
    package: PackageRecord
    request_data: JsonObject = {}
    accept_within: int = DEFAULT_ACCEPT_WITHIN  # seconds it may stay pending; added with CONTRACT §8
    encrypted: bytes | None = None  # requestData, package summary and key points under the data key


class HandoffAccepted(_Event, frozen=True):
    """The target accepted the handoff."""

    handoff_id: HandoffId
    agent: AgentId


class HandoffCompleted(_Event, frozen=True):
    """The accepting agent completed the handoff."""

    handoff_id: HandoffId
    agent: AgentId
    result: JsonObject = {}
    session_completed: bool = False
    encrypted: bytes | None = None  # result under the session's data key (handoff.kernel.erasure)


class HandoffRejected(_Event, frozen=True):
    """The target declined the handoff."""

    handoff_id: HandoffId
    agent: AgentId
    reason: str


class HandoffCancelled(_Event, frozen=True):
    """The requester withdrew the handoff."""

    handoff_id: HandoffId
    agent: AgentId
    reason: str | None = None


class HandoffExpired(_Event, frozen=True):
    """The handoff expired before it was completed."""

    handoff_id: HandoffId
    reason: str = "expired"


class SessionClosed(_Event, frozen=True):
    """A participant closed the session; open handoffs were cancelled."""

    agent: AgentId
    reason: str | None = None
    cancelled_handoffs: list[HandoffId] = []


class SessionExpired(_Event, frozen=True):
    """The session expired; open handoffs expired with it."""

    reason: str = "expired"
    cancelled_handoffs: list[HandoffId] = []


class SessionErased(_Event, frozen=True):
    """The session's data key was destroyed (retention or an operator's purge): its content is unreadable for good.

    An active session is closed by it (its open handoffs cancelled); no write is taken after it.
    """

    reason: str
    closed: bool = False
    cancelled_handoffs: list[HandoffId] = []


Event = (
    SessionRegistered
    | ContextAppended
    | HandoffRequested
    | HandoffAccepted
    | HandoffCompleted
    | HandoffRejected
    | HandoffCancelled
    | HandoffExpired
    | SessionClosed
    | SessionExpired
    | SessionErased
)

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        SessionRegistered,
        ContextAppended,
        HandoffRequested,
        HandoffAccepted,
        HandoffCompleted,
        HandoffRejected,
        HandoffCancelled,
        HandoffExpired,
        SessionClosed,
        SessionExpired,
        SessionErased,
    )
}

HANDOFF_EVENTS = (
    HandoffRequested,
    HandoffAccepted,
    HandoffCompleted,
    HandoffRejected,
    HandoffCancelled,
    HandoffExpired,
)

GENESIS_HASH = "0" * 64


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One event in a session's stream, sealed into the per-session hash chain."""

    event_id: str
    session_key: SessionKey
    version: int
    occurred_at: str
    actor: AgentId
    prev_hash: str
    hash: str
    event: Event
    idempotency_key: str | None = None
    schema_version: int = 1

    @property
    def type(self) -> str:
        """The event's stable type tag, e.g. ``"HandoffRequested"``."""
        return type(self.event).__name__


def entry_sequence(event: Event) -> int | None:
    """The context sequence number an event occupies, or None if it adds no context entry."""
    if isinstance(event, (SessionRegistered, ContextAppended, HandoffRequested)):
        return event.sequence_number
    return None
