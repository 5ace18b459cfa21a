"""The folds: `fold_x(view, envelope) -> view`, total over every event type.

The same functions run in the embedded engine, in the Kafka workers and in ``handoff replay``.
Each skips an event whose version the view already reflects, so applying twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, assert_never

import msgspec

from handoff.kernel.erasure import is_erased
from handoff.kernel.events import (
    HANDOFF_EVENTS,
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
from handoff.kernel.package import estimate_tokens
from handoff.kernel.types import AgentId
from projections.summary import add_entries, tally
from projections.views import ContextEntryView, HandoffView, SessionView, SummaryView

replace = msgspec.structs.replace


def registration_text(agent_from: str) -> str:
    """Context entry 1, which stands for SessionRegistered: a system entry naming the registering agent."""
    return f"Session registered by agent: {agent_from}"


def request_text(event: HandoffRequested) -> str:
    """The system entry that stands for a HandoffRequested event."""
    return (
        f"Handoff {event.handoff_id} requested: {event.source_agent} -> {event.target_agent} "
        f"({event.request_type}, {event.package.entry_count} entries, ~{event.package.estimated_tokens} tokens)"
    )


def entry_of(env: Envelope) -> ContextEntryView | None:
    """The context entry an event adds, if any."""
    event = env.event
    match event:
        case SessionRegistered():
            seq, content = 1, registration_text(event.agent_from)
        case ContextAppended():
            return ContextEntryView(
                sequence_number=event.sequence_number,
                context_type=event.context_type,
                content=event.content,
                content_length=len(event.content),
                agent=event.agent,
                created_at=env.occurred_at,
                version=env.version,
                event_id=env.event_id,
                tokens=event.tokens,
                metadata=event.metadata,
                erased=bool(event.encrypted),  # is_erased, inline: the hot path
            )
        case HandoffRequested():
            seq, content = event.sequence_number, request_text(event)
        case _:
            return None
    return ContextEntryView(  # a system entry standing for the event
        sequence_number=seq,
        context_type="system",
        content=content,
        content_length=len(content),
        agent=env.actor,
        created_at=env.occurred_at,
        version=env.version,
        event_id=env.event_id,
        tokens=estimate_tokens(content),
    )


def _bump(counts: dict[str, int], up: str | None, down: str | None = None) -> dict[str, int]:
    out = dict(counts)
    if up is not None:
        out[up] = out.get(up, 0) + 1
    if down is not None:
        out[down] = out.get(down, 0) - 1
    return out


def _joined(participants: list[AgentId], agent: AgentId) -> list[AgentId]:
    return participants if agent in participants else [*participants, agent]


_UNSET: Any = object()


def fold_session(  # noqa: C901 - one case per event type: a total match
    view: SessionView | None,
    env: Envelope,
    before: Mapping[str, HandoffView],
    entry: ContextEntryView | None = _UNSET,
) -> SessionView | None:
    """The session view after `env`; `before` holds the views of `affected_handoffs(env)` before it.

    `entry` may pass in `entry_of(env)` when the caller has already computed it.
    """
    event = env.event
    if isinstance(event, SessionRegistered):
        if view is not None:
            return view
        view = SessionView(
            session_key=env.session_key,
            agent_from=event.agent_from,
            holder=event.agent_from,
            participants=[event.agent_from],
            created_at=env.occurred_at,
            metadata=event.metadata,
            members=[event.agent_from],
            retention_policy=event.retention_policy,
            erased=is_erased(event),
        )
    elif view is None or env.version <= view.version:
        return view
    if entry is _UNSET:
        entry = entry_of(env)
    if entry is None:
        view = replace(view, version=env.version, updated_at=env.occurred_at)
    else:
        view = _with_entries(view, (entry,), env)
    match event:
        case SessionRegistered() | ContextAppended():
            return view
        case HandoffRequested():
            return replace(
                view,
                agent_to=event.target_agent,
                participants=_joined(view.participants, event.target_agent),
                handoff_counts=_bump(view.handoff_counts, "pending"),
            )
        case HandoffAccepted():
            prior = _status(before, event.handoff_id)
            collaboration = event.handoff_id in before and before[event.handoff_id].request_type == "collaboration"
            holder = view.holder if collaboration else event.agent
            return replace(
                view,
                holder=holder,
                participants=_joined(view.participants, event.agent),
                members=_joined(view.members, event.agent),
                handoff_counts=_bump(view.handoff_counts, "accepted", prior),
            )
        case HandoffCompleted():
            view = replace(
                view, handoff_counts=_bump(view.handoff_counts, "completed", _status(before, event.handoff_id))
            )
            return replace(view, status="completed", closed_at=env.occurred_at) if event.session_completed else view
        case HandoffRejected() | HandoffCancelled() | HandoffExpired():
            status = _TERMINAL[type(event)]
            return replace(
                view, handoff_counts=_bump(view.handoff_counts, status, _status(before, event.handoff_id))
            )
        case SessionClosed() | SessionExpired():
            counts = view.handoff_counts
            closed = "cancelled" if isinstance(event, SessionClosed) else "expired"
            for hid in event.cancelled_handoffs:
                counts = _bump(counts, closed, _status(before, hid))
            return replace(
                view,
                status="closed" if isinstance(event, SessionClosed) else "expired",
                handoff_counts=counts,
                closed_at=env.occurred_at,
                closed_by=event.agent if isinstance(event, SessionClosed) else None,
                close_reason=event.reason,
            )
        case SessionErased():
            counts = view.handoff_counts
            for hid in event.cancelled_handoffs:
                counts = _bump(counts, "cancelled", _status(before, hid))
            view = replace(view, erased=True, metadata={}, handoff_counts=counts)
            if not event.closed:
                return view
            return replace(view, status="closed", closed_at=env.occurred_at, close_reason=f"erased: {event.reason}")
        case _:
            assert_never(event)


def erased_entry(entry: ContextEntryView) -> ContextEntryView:
    """A context entry as an erased session shows it: what folding its event without the key gives.

    System entries (registration, handoff requests) hold no content of a caller's and stay as they are.
    """
    if entry.context_type == "system" and not entry.metadata:
        return entry
    return replace(entry, content="", content_length=0, metadata={}, erased=True)


def erased_summary(view: SummaryView) -> SummaryView:
    """The summary of an erased session: counts and participants, none of the texts taken from entries."""
    return replace(view, first_message=None, last_message=None, decisions=[], open_tasks=[], erased=True)


def erased_handoff(view: HandoffView) -> HandoffView:
    """A handoff of an erased session: no request data, result, package summary or key points."""
    package = replace(view.package, summary="", key_points=[])
    result: dict[str, object] | None = None if view.result is None else {}
    return replace(view, request_data={}, result=result, package=package, erased=True)


def _with_entries(view: SessionView, entries: Sequence[ContextEntryView], last: Envelope) -> SessionView:
    """The session view after entries added by events up to `last`."""
    counts, participants = tally(view.context_counts, view.participants, entries)
    return replace(
        view,
        version=last.version,
        updated_at=last.occurred_at,
        entry_count=view.entry_count + len(entries),
        last_sequence=entries[-1].sequence_number,
        context_counts=counts,
        participants=participants,
    )


def unseen(envs: Sequence[Envelope], version: int) -> list[int]:
    """The positions in `envs` that a view at `version` folding them one by one would apply (not skip)."""
    fresh = []
    for i, env in enumerate(envs):
        if env.version > version:
            fresh.append(i)
            version = env.version
    return fresh


def fold_session_appends(
    view: SessionView | None, envs: Sequence[Envelope], entries: Sequence[ContextEntryView]
) -> SessionView | None:
    """The session view after a run of its ContextAppended events (`entries` = their `entry_of`).

    Equal to folding them one by one with `fold_session`, in one step.
    """
    if view is None:
        return None
    fresh = unseen(envs, view.version)
    if not fresh:
        return view
    return _with_entries(view, [entries[i] for i in fresh], envs[fresh[-1]])


_TERMINAL: dict[type, str] = {HandoffRejected: "rejected", HandoffCancelled: "cancelled", HandoffExpired: "expired"}


def _status(before: Mapping[str, HandoffView], hid: str) -> str | None:
    view = before.get(hid)
    return None if view is None else view.status


def fold_summary(view: SummaryView | None, env: Envelope, entry: ContextEntryView | None = _UNSET) -> SummaryView:
    """The running summary after `env` (`entry` as in `fold_session`)."""
    if view is None:
        view = SummaryView(session_key=env.session_key)
    if env.version <= view.version:
        return view
    if entry is _UNSET:
        entry = entry_of(env)
    if entry is not None:
        view = add_entries(view, (entry,), env.version)
    else:
        view = replace(view, version=env.version)
    if isinstance(env.event, HandoffRequested):
        view = replace(view, handoffs=view.handoffs + 1)
    elif isinstance(env.event, SessionErased):
        view = erased_summary(view)
    return view


def fold_summary_appends(
    view: SummaryView | None, envs: Sequence[Envelope], entries: Sequence[ContextEntryView]
) -> SummaryView:
    """The summary after a run of ContextAppended events of its session: `fold_summary` of each, in one step."""
    if view is None:
        view = SummaryView(session_key=envs[0].session_key)
    fresh = unseen(envs, view.version)
    if not fresh:
        return view
    return add_entries(view, [entries[i] for i in fresh], envs[fresh[-1]].version)


def affected_handoffs(env: Envelope) -> list[str]:
    """The ids of the handoffs an event changes."""
    event = env.event
    if isinstance(event, SessionClosed | SessionExpired | SessionErased):
        return list(event.cancelled_handoffs)
    if isinstance(event, HANDOFF_EVENTS):
        return [event.handoff_id]
    return []


def fold_handoff(view: HandoffView | None, env: Envelope) -> HandoffView | None:  # noqa: C901 - one case per type: a total match
    """The handoff view after `env` (for any one of `affected_handoffs(env)`)."""
    event = env.event
    if isinstance(event, HandoffRequested):
        if view is not None:
            return view
        return HandoffView(
            handoff_id=event.handoff_id,
            session_key=env.session_key,
            source_agent=event.source_agent,
            target_agent=event.target_agent,
            request_type=event.request_type,
            status="pending",
            package=event.package,
            sequence_number=event.sequence_number,
            request_data=event.request_data,
            created_at=env.occurred_at,
            updated_at=env.occurred_at,
            version=env.version,
            erased=is_erased(event),
        )
    if view is None or env.version <= view.version:
        return view
    view = replace(view, version=env.version, updated_at=env.occurred_at)
    match event:
        case HandoffAccepted():
            return replace(view, status="accepted", accepted_by=event.agent)
        case HandoffCompleted():
            return replace(view, status="completed", result=event.result)
        case HandoffRejected():
            return replace(view, status="rejected", reason=event.reason)
        case HandoffCancelled():
            return replace(view, status="cancelled", reason=event.reason)
        case HandoffExpired():
            return replace(view, status="expired", reason=event.reason)
        case SessionClosed():
            return replace(view, status="cancelled", reason=f"session closed: {event.reason or 'no reason given'}")
        case SessionExpired():
            return replace(view, status="expired", reason=f"session expired: {event.reason}")
        case SessionErased():
            return erased_handoff(replace(view, status="cancelled", reason=f"session erased: {event.reason}"))
        case SessionRegistered() | ContextAppended():
            return view
        case _:
            assert_never(event)
