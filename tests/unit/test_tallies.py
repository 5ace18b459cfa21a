"""The business fold of CONTRACT §10: what committed events add to the counters and gauges."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings

from handoff.kernel.events import Envelope
from handoff.storage.kv import InMemoryKeyValue
from projections.folds import affected_handoffs
from projections.replay import fold_events
from projections.tallies import Tally, ViewCounts, tally, view_counts
from projections.views import HandoffView
from projections.viewstore import StoreReader

from . import support as s
from .strategies import Model, programs

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _views(kv: InMemoryKeyValue, envelopes: list[Envelope]) -> dict[str, HandoffView]:
    reader = StoreReader(kv)
    views = {hid: reader.handoff(hid) for env in envelopes for hid in affected_handoffs(env)}
    return {hid: v for hid, v in views.items() if v is not None}


def _folded(history: list[Envelope]) -> tuple[InMemoryKeyValue, Tally]:
    kv = InMemoryKeyValue()
    fold_events(kv, history)
    return kv, tally(history, _views(kv, history))


def _gauges(t: Tally) -> ViewCounts:
    statuses = ("active", "completed", "closed", "expired")
    return ViewCounts(sessions={status: t.sessions.get(status, 0) for status in statuses}, pending=t.pending)


def _known_history() -> list[Envelope]:
    """s1: a full handoff accepted 5 minutes after its request and completed (the session completes);
    s2: one rejected, one cancelled after acceptance, one collaboration still pending when s2 is closed."""
    first = s.given(
        s.register(),
        s.append("a decision", "decision"),
        s.append("a file", "file"),
        s.request(request_type="full_handoff"),
        s.register("carol", key="s2"),
        s.request("dave", key="s2"),
        s.request("erin", key="s2"),
        s.request("frank", "collaboration", key="s2"),
    )
    return s.given(
        s.accept(s.H1),
        s.complete(s.H1),
        s.reject(s.H2, "dave", key="s2"),
        s.accept(s.H3, "erin", key="s2"),
        s.cancel(s.H3, "carol", key="s2"),
        s.close("carol", key="s2"),
        now=s.LATER,
        prefix="later",
        after=first,
    )


def test_a_known_history_counts_each_session_entry_and_outcome_once() -> None:
    _, t = _folded(_known_history())
    assert t.registered == 2
    # registering and requesting each add a system entry, as get_context shows
    assert t.entries == Counter({"system": 6, "decision": 1, "file": 1})
    assert t.handoffs == Counter({
        ("full_handoff", "requested"): 1, ("full_handoff", "accepted"): 1, ("full_handoff", "completed"): 1,
        ("context_transfer", "requested"): 2, ("context_transfer", "rejected"): 1,
        ("context_transfer", "accepted"): 1, ("context_transfer", "cancelled"): 1,
        ("collaboration", "requested"): 1, ("collaboration", "cancelled"): 1,
    })  # fmt: skip


def test_handoff_durations_run_from_the_request_to_the_acceptance_and_to_the_completion() -> None:
    _, t = _folded(_known_history())
    assert t.accept_seconds == [300.0, 300.0]  # both accepted at LATER, requested at NOW
    assert t.complete_seconds == [300.0]


def test_gauge_changes_match_what_the_views_show() -> None:
    kv, t = _folded(_known_history())
    assert _gauges(t) == view_counts(kv) == ViewCounts(
        sessions={"active": 0, "completed": 1, "closed": 1, "expired": 0}, pending=0
    )


def test_a_handoff_cancelled_after_its_acceptance_leaves_pending_only_once() -> None:
    history = s.given(s.register(), s.request(), s.accept(s.H1), s.cancel(s.H1))
    _, t = _folded(history)
    assert t.pending == 0
    assert t.handoffs[("context_transfer", "cancelled")] == 1


def test_an_expired_session_expires_its_pending_handoffs() -> None:
    history = s.given(s.register(), s.request(), s.request("carol", "collaboration"), s.expire_session())
    kv, t = _folded(history)
    assert t.handoffs[("context_transfer", "expired")] == 1
    assert t.handoffs[("collaboration", "expired")] == 1
    assert _gauges(t) == view_counts(kv) == ViewCounts(
        sessions={"active": 0, "completed": 0, "closed": 0, "expired": 1}, pending=0
    )


@PROPERTY
@given(programs)
def test_counting_each_event_as_it_commits_equals_counting_the_whole_log_at_once(program: list) -> None:  # type: ignore[type-arg]
    model = Model()
    one_by_one = Tally()
    for op in program:
        before = len(model.log)
        model.run(op)
        committed = model.log[before:]  # one event, or a batch's several, or none
        if committed:
            step = tally(committed, _views(model.kv, committed))
            one_by_one.registered += step.registered
            one_by_one.entries.update(step.entries)
            one_by_one.handoffs.update(step.handoffs)
            one_by_one.sessions.update(step.sessions)
            one_by_one.pending += step.pending
            one_by_one.accept_seconds += step.accept_seconds
            one_by_one.complete_seconds += step.complete_seconds
    at_once = tally(model.log, _views(model.kv, model.log))
    assert at_once.registered == one_by_one.registered
    assert +at_once.entries == +one_by_one.entries
    assert +at_once.handoffs == +one_by_one.handoffs
    assert _gauges(at_once) == _gauges(one_by_one) == view_counts(model.kv)
    assert at_once.accept_seconds == one_by_one.accept_seconds
    assert at_once.complete_seconds == one_by_one.complete_seconds
    assert sum(n for (_, outcome), n in at_once.handoffs.items() if outcome == "requested") == len(
        list(model.kv.scan(b"H:"))
    )
