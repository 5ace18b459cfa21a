"""The decision state of one session and `evolve`, the fold that advances it by one event."""

from __future__ import annotations

from typing import assert_never

import msgspec

from handoff.kernel.events import (
    GENESIS_HASH,
    ContextAppended,
    Envelope,
    HandoffAccepted,
    HandoffCancelled,
    HandoffCompleted,
    HandoffExpired,
    HandoffRejected,
    HandoffRequested,
    SessionClosed,
    SessionErased,
    SessionExpired,
    SessionRegistered,
)
from handoff.kernel.times import plus_seconds
from handoff.kernel.types import AgentId, HandoffId, HandoffStatus, RequestType, SessionKey, SessionStatus

replace = msgspec.structs.replace


class HandoffState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the single writer must know of a handoff to decide its transitions."""

    handoff_id: HandoffId
    source_agent: AgentId
    target_agent: AgentId
    request_type: RequestType
    status: HandoffStatus
    requested_at: str
    updated_at: str
    accepted_by: AgentId | None = None
    expires_at: str = ""  # when it expires if still pending ("" for states stored before expiry existed)


class SessionState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the single writer must know of a session to decide its next command.

    Kept small on purpose: its size must not grow with the number of context entries.
    """

    session_key: SessionKey
    version: int = 0
    last_hash: str = GENESIS_HASH
    status: SessionStatus = "active"
    agent_from: AgentId = AgentId("")
    holder: AgentId = AgentId("")
    agent_to: AgentId | None = None
    participants: tuple[AgentId, ...] = ()
    last_sequence: int = 0
    created_at: str = ""
    updated_at: str = ""
    metadata: dict[str, object] = {}
    handoffs: dict[HandoffId, HandoffState] = {}
    retention_policy: str = "standard"  # its active TTL and dormancy period: handoff.kernel.lifecycle
    erased: bool = False  # its data key is destroyed (SessionErased): no write is taken any more
    encrypted: bool = False  # registered with a data key; sessions from before erasure existed hold plaintext


def _with_participant(participants: tuple[AgentId, ...], agent: AgentId) -> tuple[AgentId, ...]:
    return participants if agent in participants else (*participants, agent)


def _set_handoff(state: SessionState, hid: HandoffId, at: str, **changes: object) -> SessionState:
    handoffs = dict(state.handoffs)
    handoffs[hid] = replace(handoffs[hid], updated_at=at, **changes)
    return replace(state, handoffs=handoffs)


def _close_open(state: SessionState, ids: list[HandoffId], at: str, status: HandoffStatus) -> SessionState:
    handoffs = dict(state.handoffs)
    for hid in ids:
        handoffs[hid] = replace(handoffs[hid], status=status, updated_at=at)
    return replace(state, handoffs=handoffs)


def evolve(state: SessionState | None, env: Envelope) -> SessionState:  # noqa: C901 - one case per type: a total match
    """Advance the state by one event of its stream; events at or below its version change nothing."""
    if state is None:
        state = SessionState(session_key=env.session_key)
    if env.version <= state.version:
        return state
    at = env.occurred_at
    event = env.event
    if isinstance(event, ContextAppended):  # the hot path: one copy instead of two
        return replace(
            state,
            version=env.version,
            last_hash=env.hash,
            updated_at=at,
            last_sequence=event.sequence_number,
            participants=_with_participant(state.participants, event.agent),
        )
    state = replace(state, version=env.version, last_hash=env.hash, updated_at=at)
    match event:
        case SessionRegistered():
            return replace(
                state,
                agent_from=event.agent_from,
                holder=event.agent_from,
                participants=(event.agent_from,),
                last_sequence=event.sequence_number,
                created_at=at,
                metadata=event.metadata,
                retention_policy=event.retention_policy,
                encrypted=event.encrypted is not None,
            )
        case ContextAppended():  # pragma: no cover - returned above
            raise AssertionError("unreachable")
        case HandoffRequested():
            handoffs = dict(state.handoffs)
            handoffs[event.handoff_id] = HandoffState(
                handoff_id=event.handoff_id,
                source_agent=event.source_agent,
                target_agent=event.target_agent,
                request_type=event.request_type,
                status="pending",
                requested_at=at,
                updated_at=at,
                expires_at=plus_seconds(at, event.accept_within),
            )
            return replace(
                state,
                handoffs=handoffs,
                last_sequence=event.sequence_number,
                agent_to=event.target_agent,
                participants=_with_participant(state.participants, event.target_agent),
            )
        case HandoffAccepted():
            request_type = state.handoffs[event.handoff_id].request_type
            holder = state.holder if request_type == "collaboration" else event.agent
            state = replace(state, holder=holder, participants=_with_participant(state.participants, event.agent))
            return _set_handoff(state, event.handoff_id, at, status="accepted", accepted_by=event.agent)
        case HandoffCompleted():
            state = _set_handoff(state, event.handoff_id, at, status="completed")
            return replace(state, status="completed") if event.session_completed else state
        case HandoffRejected():
            return _set_handoff(state, event.handoff_id, at, status="rejected")
        case HandoffCancelled():
            return _set_handoff(state, event.handoff_id, at, status="cancelled")
        case HandoffExpired():
            return _set_handoff(state, event.handoff_id, at, status="expired")
        case SessionClosed():
            return replace(_close_open(state, event.cancelled_handoffs, at, "cancelled"), status="closed")
        case SessionExpired():
            return replace(_close_open(state, event.cancelled_handoffs, at, "expired"), status="expired")
        case SessionErased():
            state = _close_open(state, event.cancelled_handoffs, at, "cancelled")
            return replace(state, status="closed" if event.closed else state.status, erased=True, metadata={})
        case _:
            assert_never(event)
