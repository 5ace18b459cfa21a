"""Pure mappings from what the ports return (outcomes and views) to tool results.

Write results use only `Outcome.envelope` and `Outcome.receipt`, so an idempotent retry, which
returns the first write's envelope and receipt, gets exactly the first result.
"""

from __future__ import annotations

from handoff.kernel.events import (
    ContextAppended,
    HandoffCancelled,
    HandoffCompleted,
    HandoffRejected,
    HandoffRequested,
    PackageRecord,
    SessionClosed,
)
from handoff.kernel.package import PackageEntry
from handoff.mcp.results import (
    CloseSessionResult,
    ContextEntryOut,
    HandoffOut,
    HandoffResult,
    PackageOut,
    PackageRef,
    RegisterSessionResult,
    SessionOut,
    SessionRef,
    SummaryOut,
    UpdateContextResult,
)
from handoff.ports import Outcome
from projections.summary import key_points, render
from projections.views import HandoffView, SummaryView


def session_ref(outcome: Outcome) -> SessionRef:
    """Key, status and version of the session right after the write."""
    snap = outcome.receipt.session
    return SessionRef(session_key=snap.session_key, status=snap.status, version=snap.version)


def session_out(outcome: Outcome) -> SessionOut:
    """The session as the write left it; a close also says who closed it, why, and what it cancelled."""
    snap = outcome.receipt.session
    out = SessionOut(
        session_key=snap.session_key,
        agent_from=snap.agent_from,
        holder=snap.holder,
        status=snap.status,
        version=snap.version,
        created_at=snap.created_at,
        updated_at=snap.updated_at,
        metadata=dict(snap.metadata),
    )
    event = outcome.envelope.event
    if isinstance(event, SessionClosed):
        out.closed_by = event.agent
        out.close_reason = event.reason
        out.cancelled_handoffs = list(event.cancelled_handoffs)
    return out


def registered(outcome: Outcome) -> RegisterSessionResult:
    """`register_session`."""
    return RegisterSessionResult(success=True, session=session_out(outcome))


def closed(outcome: Outcome) -> CloseSessionResult:
    """`close_session`."""
    return CloseSessionResult(success=True, session=session_out(outcome))


def appended(outcome: Outcome) -> UpdateContextResult:
    """`update_context`."""
    event = outcome.envelope.event
    assert isinstance(event, ContextAppended), "update_context always appends context"
    entry = ContextEntryOut(
        sequence_number=event.sequence_number,
        context_type=event.context_type,
        content_length=len(event.content),
        agent=event.agent,
        created_at=outcome.envelope.occurred_at,
    )
    return UpdateContextResult(success=True, context_entry=entry, session=session_ref(outcome))


def package_ref(record: PackageRecord) -> PackageRef:
    """The range, budget and hash of a recorded package."""
    return PackageRef(
        from_sequence=record.from_sequence,
        to_sequence=record.to_sequence,
        token_budget=record.token_budget,
        estimated_tokens=record.estimated_tokens,
        sha256=record.sha256,
        entry_count=record.entry_count,
    )


def handoff_changed(outcome: Outcome) -> HandoffResult:
    """Any handoff write: the handoff as its receipt records it, plus what the event adds."""
    handoff = outcome.receipt.handoff
    assert handoff is not None, "a handoff write's receipt always carries the handoff"
    out = HandoffOut(
        handoff_id=handoff.handoff_id,
        session_key=outcome.envelope.session_key,
        source_agent=handoff.source_agent,
        target_agent=handoff.target_agent,
        request_type=handoff.request_type,
        status=handoff.status,
        created_at=handoff.requested_at,
        updated_at=handoff.updated_at,
        accepted_by=handoff.accepted_by,
    )
    event = outcome.envelope.event
    if isinstance(event, HandoffRequested):
        out.context_summary = event.package.summary
        out.context_entries = event.package.entry_count
        out.request_data = dict(event.request_data)
        out.package = package_ref(event.package)
    elif isinstance(event, HandoffCompleted):
        out.result = dict(event.result)
    elif isinstance(event, HandoffRejected | HandoffCancelled):
        out.reason = event.reason
    return HandoffResult(success=True, handoff=out, session=session_ref(outcome))


def handoff_view(view: HandoffView) -> HandoffOut:
    """A handoff as the read side shows it."""
    return HandoffOut(
        handoff_id=view.handoff_id,
        session_key=view.session_key,
        source_agent=view.source_agent,
        target_agent=view.target_agent,
        request_type=view.request_type,
        status=view.status,
        created_at=view.created_at,
        updated_at=view.updated_at,
        context_summary=view.package.summary,
        context_entries=view.package.entry_count,
        request_data=dict(view.request_data),
        accepted_by=view.accepted_by,
        result=None if view.result is None else dict(view.result),
        reason=view.reason,
        package=package_ref(view.package),
    )


def package_out(record: PackageRecord, entries: list[PackageEntry]) -> PackageOut:
    """The full recorded package."""
    return PackageOut(
        summary=record.summary,
        key_points=list(record.key_points),
        participants=list(record.participants),
        entries=entries,
        from_sequence=record.from_sequence,
        to_sequence=record.to_sequence,
        token_budget=record.token_budget,
        estimated_tokens=record.estimated_tokens,
        sha256=record.sha256,
    )


def summary_out(view: SummaryView) -> SummaryOut:
    """The summary view with its text and key points."""
    fields = {f: getattr(view, f) for f in view.__struct_fields__}
    return SummaryOut(**fields, text=render(view), key_points=key_points(view))
