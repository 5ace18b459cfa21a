"""`decide`: the rules. Given a session's state and a command, the one event it produces, or an error.

`decide_all` is the whole decider: every command produces one event (`decide`), except
`AppendContextBatch`, which produces one `ContextAppended` per entry, all or none. `execute_all`
seals and folds them one after the other, so each has its own version, sequence number and link
in the hash chain, exactly as if they had been appended one by one.

Pure: the clock, the id generator and the pre-built handoff package come in through `Ctx`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

import msgspec

from handoff.kernel.access import check_principal, check_session_rules
from handoff.kernel.codec import sealed_record
from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    AppendContextBatch,
    CancelHandoff,
    CloseSession,
    Command,
    CompleteHandoff,
    EraseSession,
    ExpireHandoff,
    ExpireSession,
    RegisterSession,
    RejectHandoff,
    RequestHandoff,
)
from handoff.kernel.erasure import FieldCipher, sealed_and_shown
from handoff.kernel.errors import (
    HandoffConflict,
    HandoffNotFound,
    InvalidArgument,
    LimitExceeded,
    NotPermitted,
    SessionExists,
    SessionNotActive,
    SessionNotFound,
    VersionConflict,
)
from handoff.kernel.events import (
    ContextAppended,
    Envelope,
    Event,
    HandoffAccepted,
    HandoffCancelled,
    HandoffCompleted,
    HandoffExpired,
    HandoffRejected,
    HandoffRequested,
    PackageRecord,
    SessionClosed,
    SessionErased,
    SessionExpired,
    SessionRegistered,
)
from handoff.kernel.limits import check_limits
from handoff.kernel.package import estimate_tokens
from handoff.kernel.state import HandoffState, SessionState, evolve
from handoff.kernel.types import DEFAULT_ACCEPT_WITHIN, OPEN_HANDOFF_STATUSES, AgentId, HandoffId, Limits

SYSTEM_ACTOR = AgentId("system")


class Ctx(msgspec.Struct, frozen=True, gc=False):
    """Everything impure a decision needs, supplied by the shell (a Struct: built once per command)."""

    now: str
    new_id: Callable[[], str]
    limits: Limits = Limits()
    package: PackageRecord | None = None  # required for RequestHandoff, built from the views


def _require_active(state: SessionState | None, key: str) -> SessionState:
    if state is None or state.version == 0:
        raise SessionNotFound(f"session {key!r} does not exist", sessionKey=key)
    if state.status != "active":
        raise SessionNotActive(f"session {key!r} is {state.status}", sessionKey=key, status=state.status)
    return state


def _handoff(state: SessionState, hid: HandoffId) -> HandoffState:
    handoff = state.handoffs.get(hid)
    if handoff is None:
        raise HandoffNotFound(f"handoff {hid!r} does not exist in session {state.session_key!r}", handoffId=hid)
    return handoff


def _conflict(handoff: HandoffState, action: str) -> HandoffConflict:
    detail = f" by {handoff.accepted_by!r}" if handoff.accepted_by else ""
    return HandoffConflict(
        f"handoff {handoff.handoff_id!r} is {handoff.status}{detail}; it cannot be {action}",
        handoffId=handoff.handoff_id,
        status=handoff.status,
    )


def _decide_handoff(state: SessionState, command: Command) -> tuple[Event, AgentId]:  # noqa: C901 - one case per type: a total match
    match command:
        case AcceptHandoff(handoff_id=hid, agent=agent):
            h = _handoff(state, hid)
            if h.status != "pending":
                raise _conflict(h, "accepted")
            if agent != h.target_agent:
                raise NotPermitted(f"only {h.target_agent!r} may accept handoff {hid!r}", handoffId=hid)
            return HandoffAccepted(handoff_id=hid, agent=agent), agent
        case CompleteHandoff(handoff_id=hid, agent=agent, result=result):
            h = _handoff(state, hid)
            if h.status == "accepted" and agent != h.accepted_by:
                raise NotPermitted(f"only {h.accepted_by!r}, who accepted it, may complete {hid!r}", handoffId=hid)
            if h.status != "accepted":
                raise _conflict(h, "completed")
            full = h.request_type == "full_handoff"
            return HandoffCompleted(handoff_id=hid, agent=agent, result=result or {}, session_completed=full), agent
        case RejectHandoff(handoff_id=hid, agent=agent, reason=reason):
            h = _handoff(state, hid)
            if agent != h.target_agent:
                raise NotPermitted(f"only {h.target_agent!r} may reject handoff {hid!r}", handoffId=hid)
            if h.status != "pending":
                raise _conflict(h, "rejected")
            return HandoffRejected(handoff_id=hid, agent=agent, reason=reason), agent
        case CancelHandoff(handoff_id=hid, agent=agent, reason=reason):
            h = _handoff(state, hid)
            if agent != h.source_agent:
                raise NotPermitted(f"only {h.source_agent!r}, who requested it, may cancel {hid!r}", handoffId=hid)
            if h.status not in OPEN_HANDOFF_STATUSES:
                raise _conflict(h, "cancelled")
            return HandoffCancelled(handoff_id=hid, agent=agent, reason=reason), agent
        case ExpireHandoff(handoff_id=hid, reason=reason):
            h = _handoff(state, hid)
            if h.status not in OPEN_HANDOFF_STATUSES:
                raise _conflict(h, "expired")
            return HandoffExpired(handoff_id=hid, reason=reason), SYSTEM_ACTOR
    raise AssertionError(f"not a handoff command: {command!r}")  # pragma: no cover


def _open_handoffs(state: SessionState) -> list[HandoffId]:
    return [h.handoff_id for h in state.handoffs.values() if h.status in OPEN_HANDOFF_STATUSES]


def decide(state: SessionState | None, command: Command, ctx: Ctx) -> tuple[Event, AgentId]:  # noqa: C901 - one case per type: a total match
    """The event the command produces and the actor it is attributed to; raises a DomainError."""
    key = command.session_key
    check_principal(command)
    if isinstance(command, RegisterSession):
        if state is not None and state.version > 0:
            raise SessionExists(f"session {key!r} already exists", sessionKey=key)
        _check_version(0, command)
        registered = SessionRegistered(
            agent_from=command.agent_from,
            metadata=command.metadata or {},
            retention_policy=command.retention_policy or "standard",
        )
        return registered, command.agent_from
    if isinstance(command, EraseSession):
        return _decide_erase(state, command)
    state = _require_active(state, key)
    _check_version(state.version, command)
    check_session_rules(state, command)
    match command:
        case AppendContext():
            agent = _appender(state, command)
            _room_for_participant(state, agent, ctx.limits)
            event: Event = ContextAppended(
                sequence_number=state.last_sequence + 1,
                context_type=command.context_type,
                content=command.content,
                agent=agent,
                tokens=estimate_tokens(command.content),
                metadata=command.metadata or {},
            )
            return event, agent
        case RequestHandoff():
            if command.target_agent == state.holder:
                raise InvalidArgument(f"{state.holder!r} already holds session {key!r}", field="targetAgent")
            _room_for_participant(state, command.target_agent, ctx.limits)  # a target takes part from its request
            if len(_open_handoffs(state)) >= ctx.limits.open_handoffs_max:
                limit = ctx.limits.open_handoffs_max
                raise LimitExceeded(
                    f"session {key!r} has {limit} open handoffs, the limit", sessionKey=key, limit=limit
                )
            if ctx.package is None:
                raise AssertionError("the shell must build the package before deciding RequestHandoff")
            event = HandoffRequested(
                handoff_id=HandoffId(ctx.new_id()),
                sequence_number=state.last_sequence + 1,
                source_agent=state.holder,
                target_agent=command.target_agent,
                request_type=command.request_type,
                request_data=command.request_data or {},
                package=ctx.package,
                accept_within=command.accept_within or DEFAULT_ACCEPT_WITHIN,
            )
            return event, state.holder
        case CloseSession(agent=agent, reason=reason):
            if command.principal is None and agent not in state.participants:
                raise NotPermitted(f"{agent!r} takes no part in session {key!r} and may not close it", sessionKey=key)
            return SessionClosed(agent=agent, reason=reason, cancelled_handoffs=_open_handoffs(state)), agent
        case ExpireSession(reason=reason):
            return SessionExpired(reason=reason, cancelled_handoffs=_open_handoffs(state)), SYSTEM_ACTOR
        case AcceptHandoff() | CompleteHandoff() | RejectHandoff() | CancelHandoff() | ExpireHandoff():
            return _decide_handoff(state, command)
        case RegisterSession() | EraseSession():  # pragma: no cover - handled above
            raise AssertionError("unreachable")
        case AppendContextBatch():  # pragma: no cover - decide_all decides it
            raise AssertionError("AppendContextBatch produces several events: decide it with decide_all")
        case _:
            assert_never(command)


def decide_all(state: SessionState | None, command: Command, ctx: Ctx) -> tuple[list[Event], AgentId]:
    """The events the command produces, in order, and their actor; raises a DomainError (then none)."""
    if not isinstance(command, AppendContextBatch):
        event, actor = decide(state, command, ctx)
        return [event], actor
    check_principal(command)
    state = _require_active(state, command.session_key)
    _check_version(state.version, command)
    check_session_rules(state, command)
    agent = _appender(state, command)
    _room_for_participant(state, agent, ctx.limits)
    events: list[Event] = [
        ContextAppended(
            sequence_number=state.last_sequence + i,
            context_type=item.context_type,
            content=item.content,
            agent=agent,
            tokens=estimate_tokens(item.content),
            metadata=item.metadata or {},
        )
        for i, item in enumerate(command.entries, start=1)
    ]
    return events, agent


def _appender(state: SessionState, command: AppendContext | AppendContextBatch) -> AgentId:
    """Who appends: the agent named, else the principal's, else the session's holder."""
    principal = command.principal
    return command.agent or (principal.agent if principal is not None else state.holder)


def _decide_erase(state: SessionState | None, command: EraseSession) -> tuple[Event, AgentId]:
    """Erase a session in any status, once; an active one is closed by it. Plaintext sessions cannot be erased."""
    key = command.session_key
    if state is None or state.version == 0:
        raise SessionNotFound(f"session {key!r} does not exist", sessionKey=key)
    _check_version(state.version, command)
    if state.erased:
        raise SessionNotActive(f"session {key!r} is already erased", sessionKey=key, status=state.status)
    if not state.encrypted:
        raise InvalidArgument(
            f"session {key!r} was written before erasure existed: its log holds its content in the clear, "
            "and no key can be destroyed to erase it",
            sessionKey=key,
        )
    active = state.status == "active"
    erased = SessionErased(reason=command.reason, closed=active, cancelled_handoffs=_open_handoffs(state))
    return erased, AgentId(command.actor)


def _room_for_participant(state: SessionState, agent: str, limits: Limits) -> None:
    """LIMIT_EXCEEDED if `agent` would join a session that already has the most participants it may have."""
    if agent not in state.participants and len(state.participants) >= limits.participants_max:
        key, limit = state.session_key, limits.participants_max
        raise LimitExceeded(f"session {key!r} has {limit} participants, the limit", sessionKey=key, limit=limit)


def _check_version(current: int, command: Command) -> None:
    expected = command.expected_version
    if expected is not None and expected != current:
        raise VersionConflict(
            f"session {command.session_key!r} is at version {current}, not {expected}",
            sessionKey=command.session_key,
            currentVersion=current,
            expectedVersion=expected,
        )


def execute(state: SessionState | None, command: Command, ctx: Ctx) -> tuple[SessionState, Envelope]:
    """Check limits, decide, seal the event into the chain and fold it: the whole write path, pure."""
    new_state, env, _ = execute_encoded(state, command, ctx)
    return new_state, env


def execute_encoded(
    state: SessionState | None, command: Command, ctx: Ctx, cipher: FieldCipher | None = None
) -> tuple[SessionState, Envelope, bytes]:
    """`execute`, also returning the event's canonical wire bytes (encoded once, for the log).

    With the session's `cipher` the record (and so the hash) holds the erasable fields encrypted
    (`handoff.kernel.erasure`); the envelope returned holds them in the clear, for the folds and the
    caller, marked (``encrypted == b""``) as belonging to a session with a key.
    """
    check_limits(command, ctx.limits)
    event, actor = decide(state, command, ctx)
    prior = state or SessionState(session_key=command.session_key)
    env, record = _seal(prior, command, event, actor, ctx, cipher)
    return evolve(prior, env), env, record


def execute_all(
    state: SessionState | None, command: Command, ctx: Ctx, cipher: FieldCipher | None = None
) -> tuple[SessionState, list[tuple[Envelope, bytes]]]:
    """`execute_encoded` for any command: every event it produces, sealed (with `cipher`) and folded in turn."""
    check_limits(command, ctx.limits)
    current = state or SessionState(session_key=command.session_key)
    if type(command) is not AppendContextBatch:  # one event: the hot path, no loop
        event, actor = decide(state, command, ctx)
        env, record = _seal(current, command, event, actor, ctx, cipher)
        return evolve(current, env), [(env, record)]
    events, actor = decide_all(state, command, ctx)
    sealed: list[tuple[Envelope, bytes]] = []
    for event in events:
        env, record = _seal(current, command, event, actor, ctx, cipher)
        current = evolve(current, env)
        sealed.append((env, record))
    return current, sealed


def _seal(
    prior: SessionState, command: Command, event: Event, actor: AgentId, ctx: Ctx, cipher: FieldCipher | None
) -> tuple[Envelope, bytes]:
    """The event in its envelope, chained to the session's last hash, and its canonical bytes.

    With `cipher` the bytes hold the erasable fields encrypted; the envelope holds them in the clear.
    """
    key, event_id, version, schema = command.session_key, ctx.new_id(), prior.version + 1, type(event).SCHEMA_VERSION
    stored = event
    if cipher is not None:
        stored, event = sealed_and_shown(event, cipher)
    digest, record = sealed_record(
        stored, event_id, key, version, ctx.now, actor, prior.last_hash, command.idempotency_key, schema
    )
    env = Envelope(
        event_id=event_id,
        session_key=key,
        version=version,
        occurred_at=ctx.now,
        actor=actor,
        prev_hash=prior.last_hash,
        hash=digest,
        event=event,
        idempotency_key=command.idempotency_key,
        schema_version=schema,
    )
    return env, record
