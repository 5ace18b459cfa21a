"""What committed events add to the business series of CONTRACT §10: a pure fold, and the gauges read back from views.

The embedded engine and the Kafka workers both call `tally` on the events of each committed batch,
with the batch's handoff views, so the two modes count alike. `tally` needs no state of its own:

- a handoff event names only its handoff, so its request type and the time it was requested
  come from the handoff's view after the batch (`request_type`, `created_at`);
- a handoff leaves ``pending`` exactly once, by being accepted, rejected, cancelled or expired; a
  cancelled or expired handoff was still pending iff its view has no ``accepted_by``;
- every event but `SessionRegistered` is decided on an ``active`` session, so a session that
  closes, expires or completes leaves ``active``.

Context entries are counted as ``get_context`` shows them: registration and each handoff request add
a ``system`` entry besides the appended ones.

After a restart the gauges are not counted from zero: `view_counts` reads them from the views'
indexes (the status index of sessions, the pending slice of handoffs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from handoff.kernel.events import (
    ContextAppended,
    Envelope,
    HandoffAccepted,
    HandoffCancelled,
    HandoffCompleted,
    HandoffExpired,
    HandoffRejected,
    HandoffRequested,
    SessionClosed,
    SessionExpired,
    SessionRegistered,
)
from handoff.storage import keys
from handoff.storage.kv import KeyValue
from projections.views import HandoffView

CONTEXT_TYPES = ("message", "file", "tool_call", "system", "decision", "task")
REQUEST_TYPES = ("context_transfer", "full_handoff", "collaboration")
OUTCOMES = ("requested", "accepted", "completed", "rejected", "cancelled", "expired")
SESSION_STATUSES = ("active", "completed", "closed", "expired")
UNKNOWN = "unknown"  # the request type of a handoff whose view is missing (never expected)


@dataclass
class Tally:
    """What one run of committed events adds: counters, gauge deltas and durations."""

    registered: int = 0
    entries: Counter[str] = field(default_factory=Counter)  # by context type
    handoffs: Counter[tuple[str, str]] = field(default_factory=Counter)  # by (request type, outcome)
    sessions: Counter[str] = field(default_factory=Counter)  # status -> change of the number of sessions in it
    pending: int = 0  # change of the number of pending handoffs
    accept_seconds: list[float] = field(default_factory=list)  # request -> accept, per accepted handoff
    complete_seconds: list[float] = field(default_factory=list)  # request -> complete, per completed handoff


@dataclass(frozen=True)
class ViewCounts:
    """The gauges as the views show them."""

    sessions: dict[str, int]
    pending: int


def tally(envelopes: Iterable[Envelope], handoffs: Mapping[str, HandoffView], into: Tally | None = None) -> Tally:
    """Fold committed events (in commit order) with the handoff views they left into `into` (or a new `Tally`)."""
    out = Tally() if into is None else into
    entries = out.entries
    for env in envelopes:
        event = env.event
        if type(event) is ContextAppended:  # most events: one dict increment, no match
            entries[event.context_type] += 1
        else:
            _add(out, env, handoffs)
    return out


def _add(out: Tally, env: Envelope, handoffs: Mapping[str, HandoffView]) -> None:  # noqa: C901 - one case per type
    event = env.event
    match event:
        case SessionRegistered():
            out.registered += 1
            out.entries["system"] += 1
            out.sessions["active"] += 1
        case ContextAppended():
            out.entries[event.context_type] += 1
        case HandoffRequested():
            out.entries["system"] += 1
            out.handoffs[(event.request_type, "requested")] += 1
            out.pending += 1
        case HandoffAccepted():
            view = handoffs.get(event.handoff_id)
            out.handoffs[(_type(view), "accepted")] += 1
            out.pending -= 1
            _since_request(out.accept_seconds, view, env.occurred_at)
        case HandoffCompleted():
            view = handoffs.get(event.handoff_id)
            out.handoffs[(_type(view), "completed")] += 1
            _since_request(out.complete_seconds, view, env.occurred_at)
            if event.session_completed:
                out.sessions["active"] -= 1
                out.sessions["completed"] += 1
        case HandoffRejected():
            out.handoffs[(_type(handoffs.get(event.handoff_id)), "rejected")] += 1
            out.pending -= 1
        case HandoffCancelled() | HandoffExpired():
            outcome = "cancelled" if isinstance(event, HandoffCancelled) else "expired"
            _ended(out, handoffs.get(event.handoff_id), outcome)
        case SessionClosed() | SessionExpired():
            outcome = "cancelled" if isinstance(event, SessionClosed) else "expired"
            for hid in event.cancelled_handoffs:
                _ended(out, handoffs.get(hid), outcome)
            out.sessions["active"] -= 1
            out.sessions["closed" if isinstance(event, SessionClosed) else "expired"] += 1


def _type(view: HandoffView | None) -> str:
    return UNKNOWN if view is None else view.request_type


def _ended(out: Tally, view: HandoffView | None, outcome: str) -> None:
    """A handoff cancelled or expired, accepted before or still pending."""
    out.handoffs[(_type(view), outcome)] += 1
    if view is None or view.accepted_by is None:
        out.pending -= 1


def _since_request(into: list[float], view: HandoffView | None, at: str) -> None:
    if view is None or not view.created_at:
        return
    seconds = (datetime.fromisoformat(at) - datetime.fromisoformat(view.created_at)).total_seconds()
    into.append(max(0.0, seconds))


def view_counts(kv: KeyValue) -> ViewCounts:
    """Sessions by status and pending handoffs, counted from the views' index entries (one scan of each slice)."""
    sessions = {status: _count(kv, keys.index_prefix("Ss", status)) for status in SESSION_STATUSES}
    return ViewCounts(sessions=sessions, pending=_count(kv, keys.index_prefix("Hs", "pending")))


def _count(kv: KeyValue, prefix: bytes) -> int:
    return sum(1 for _ in kv.scan(prefix))
