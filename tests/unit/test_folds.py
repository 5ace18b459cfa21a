"""The folds: session, handoff and summary views after each event type, and the entries events add."""

from __future__ import annotations

import pytest

from handoff.storage.kv import InMemoryKeyValue
from projections.folds import affected_handoffs, entry_of, fold_handoff, fold_session, fold_summary, registration_text
from projections.queries import Queries
from projections.replay import fold_events

from .support import (
    H1,
    H2,
    NOW,
    accept,
    append,
    cancel,
    close,
    complete,
    expire_handoff,
    expire_session,
    given,
    handoff_ids,
    register,
    reject,
    request,
)


def _views(history):
    kv = InMemoryKeyValue()
    fold_events(kv, history)
    return Queries(kv), kv


def _session(history):
    return _views(history)[0].session("s1")


def _handoff(history, n=0):
    return _views(history)[0].handoff(handoff_ids(history)[n])


def _summary(history):
    return _views(history)[0].reader.summary("s1")


# -- entry_of ----------------------------------------------------------------------------------------


def test_a_registration_is_shown_as_the_first_system_entry():
    env = given(register("alice"))[0]
    entry = entry_of(env)
    assert (entry.sequence_number, entry.context_type, entry.content, entry.agent) == (
        1,
        "system",
        "Session registered by agent: alice",
        "alice",
    )
    assert (entry.version, entry.event_id, entry.created_at) == (1, env.event_id, NOW)
    assert entry.content == registration_text("alice")


def test_an_appended_context_is_shown_as_itself():
    env = given(register(), append("héllo", "file", agent="bob", metadata={"path": "a.py"}))[1]
    entry = entry_of(env)
    assert (entry.sequence_number, entry.context_type, entry.content, entry.agent) == (2, "file", "héllo", "bob")
    assert entry.content_length == 5 and entry.metadata == {"path": "a.py"}


def test_a_handoff_request_is_shown_as_a_system_entry():
    history = given(register(), request("bob", "full_handoff"))
    entry = entry_of(history[1])
    assert (entry.sequence_number, entry.context_type, entry.agent) == (2, "system", "alice")
    assert entry.content.startswith(f"Handoff {handoff_ids(history)[0]} requested: alice -> bob (full_handoff, ")


@pytest.mark.parametrize(
    "last",
    [accept(H1), reject(H1), cancel(H1), expire_handoff(H1), close(), expire_session()],
    ids=lambda c: type(c).__name__,
)
def test_the_other_events_add_no_entry(last):
    assert entry_of(given(register(), request("bob"), last)[-1]) is None


# -- the session view --------------------------------------------------------------------------------


def test_a_registered_session_view_counts_its_registration_entry():
    view = _session(given(register("alice", metadata={"p": 1})))
    assert (view.session_key, view.agent_from, view.holder, view.status, view.version) == (
        "s1",
        "alice",
        "alice",
        "active",
        1,
    )
    assert (view.entry_count, view.last_sequence, view.context_counts) == (1, 1, {"system": 1})
    assert (view.participants, view.metadata, view.created_at, view.updated_at) == (["alice"], {"p": 1}, NOW, NOW)


def test_an_appended_entry_counts_by_type_and_adds_its_agent_as_participant():
    view = _session(given(register(), append(), append("d", "decision", agent="carol")))
    assert view.context_counts == {"system": 1, "message": 1, "decision": 1}
    assert (view.entry_count, view.last_sequence, view.version) == (3, 3, 3)
    assert view.participants == ["alice", "carol"]


def test_a_request_records_the_target_and_a_pending_handoff():
    view = _session(given(register(), request("bob")))
    assert (view.agent_to, view.participants, view.handoff_counts) == ("bob", ["alice", "bob"], {"pending": 1})
    assert view.entry_count == 2


def test_accepting_a_transfer_moves_the_holder_and_the_count():
    view = _session(given(register(), request("bob"), accept(H1)))
    assert view.holder == "bob"
    assert view.handoff_counts == {"pending": 0, "accepted": 1}


def test_accepting_a_collaboration_keeps_the_holder():
    assert _session(given(register(), request("bob", "collaboration"), accept(H1))).holder == "alice"


def test_completing_a_full_handoff_completes_the_session_view():
    view = _session(given(register(), request("bob", "full_handoff"), accept(H1), complete(H1)))
    assert (view.status, view.closed_at) == ("completed", NOW)
    assert view.handoff_counts == {"pending": 0, "accepted": 0, "completed": 1}


def test_completing_a_transfer_leaves_the_session_view_active():
    view = _session(given(register(), request("bob"), accept(H1), complete(H1)))
    assert view.status == "active" and view.closed_at is None


@pytest.mark.parametrize(
    ("ending", "status"),
    [(reject(H1), "rejected"), (cancel(H1), "cancelled"), (expire_handoff(H1), "expired")],
)
def test_a_handoff_ending_moves_its_count(ending, status):
    assert _session(given(register(), request("bob"), ending)).handoff_counts == {"pending": 0, status: 1}


def test_closing_cancels_the_open_handoffs_in_the_counts_and_records_who_and_why():
    history = given(register(), request("bob", "collaboration"), accept(H1), request("carol"), close(reason="done"))
    view = _session(history)
    assert (view.status, view.closed_by, view.close_reason, view.closed_at) == ("closed", "alice", "done", NOW)
    assert view.handoff_counts == {"pending": 0, "accepted": 0, "cancelled": 2}


def test_expiring_expires_the_open_handoffs_in_the_counts():
    view = _session(given(register(), request("bob"), expire_session(reason="idle")))
    assert (view.status, view.closed_by, view.close_reason) == ("expired", None, "idle")
    assert view.handoff_counts == {"pending": 0, "expired": 1}


def test_a_session_fold_skips_events_it_already_reflects():
    history = given(register(), append(), append())
    view = None
    for env in history:
        view = fold_session(view, env, {})
    for env in history:
        assert fold_session(view, env, {}) is view


def test_a_session_fold_ignores_events_of_a_session_it_has_not_seen_registered():
    assert fold_session(None, given(register(), append())[1], {}) is None


# -- the handoff view --------------------------------------------------------------------------------


def test_a_requested_handoff_view_holds_its_recorded_package():
    history = given(register(), request("bob", "full_handoff", request_data={"why": "x"}))
    view = _handoff(history)
    event = history[-1].event
    assert (view.status, view.source_agent, view.target_agent, view.request_type) == (
        "pending",
        "alice",
        "bob",
        "full_handoff",
    )
    assert (view.package, view.sequence_number, view.request_data, view.version) == (event.package, 2, {"why": "x"}, 2)


def test_an_accepted_handoff_view_names_who_accepted_it():
    view = _handoff(given(register(), request("bob"), accept(H1)))
    assert (view.status, view.accepted_by, view.version) == ("accepted", "bob", 3)


def test_a_completed_handoff_view_holds_the_result():
    view = _handoff(given(register(), request("bob"), accept(H1), complete(H1, result={"ok": 1})))
    assert (view.status, view.result) == ("completed", {"ok": 1})


@pytest.mark.parametrize(
    ("ending", "status", "reason"),
    [
        (reject(H1, reason="busy"), "rejected", "busy"),
        (cancel(H1, reason="nvm"), "cancelled", "nvm"),
        (expire_handoff(H1, reason="ttl"), "expired", "ttl"),
        (close(reason="done"), "cancelled", "session closed: done"),
        (close(), "cancelled", "session closed: no reason given"),
        (expire_session(reason="idle"), "expired", "session expired: idle"),
    ],
)
def test_an_ended_handoff_view_holds_its_status_and_reason(ending, status, reason):
    view = _handoff(given(register(), request("bob"), ending))
    assert (view.status, view.reason) == (status, reason)


def test_closing_a_session_leaves_its_finished_handoffs_as_they_were():
    history = given(register(), request("bob"), reject(H1), request("carol"), close())
    assert (_handoff(history, 0).status, _handoff(history, 1).status) == ("rejected", "cancelled")


def test_the_handoffs_an_event_changes_are_its_own_or_the_ones_a_close_cancels():
    history = given(register(), request("bob"), request("carol"), accept(H2, "carol"), close())
    first, second = handoff_ids(history)
    assert [affected_handoffs(env) for env in history] == [[], [first], [second], [second], [first, second]]


def test_a_handoff_fold_skips_events_it_already_reflects():
    history = given(register(), request("bob"), accept(H1))
    view = fold_handoff(fold_handoff(None, history[1]), history[2])
    assert fold_handoff(view, history[1]) is view
    assert fold_handoff(view, history[2]) is view


# -- the summary view --------------------------------------------------------------------------------


def test_the_summary_counts_the_registration_appends_and_requests_as_entries():
    view = _summary(given(register(), append("hi", agent="bob"), request("carol")))
    assert (view.version, view.total_entries, view.handoffs) == (3, 3, 1)
    assert view.counts == {"system": 2, "message": 1}
    assert view.participants == ["alice", "bob"]
    assert view.first_message == "hi"


def test_handoff_transitions_advance_the_summary_version_only():
    before = _summary(given(register(), request("bob")))
    after = _summary(given(register(), request("bob"), accept(H1)))
    assert after.version == before.version + 1
    assert (after.total_entries, after.counts, after.handoffs) == (before.total_entries, before.counts, 1)


def test_a_summary_fold_skips_events_it_already_reflects():
    history = given(register(), append())
    view = fold_summary(fold_summary(None, history[0]), history[1])
    assert fold_summary(view, history[0]) is view and fold_summary(view, history[1]) is view
