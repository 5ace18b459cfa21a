"""Rules of the handoff commands: request, accept, complete, reject, cancel and expire."""

from __future__ import annotations

import pytest

from handoff.kernel.decide import SYSTEM_ACTOR, Ctx, decide
from handoff.kernel.errors import (
    HandoffConflict,
    HandoffNotFound,
    InvalidArgument,
    NotPermitted,
    SessionNotActive,
    SessionNotFound,
)
from handoff.kernel.events import (
    HandoffAccepted,
    HandoffCancelled,
    HandoffCompleted,
    HandoffExpired,
    HandoffRejected,
    HandoffRequested,
)

from .support import (
    H1,
    H2,
    PACKAGE,
    accept,
    append,
    cancel,
    close,
    complete,
    expire_handoff,
    given,
    handoff_ids,
    refused,
    register,
    reject,
    request,
    requested,
    state_of,
    when,
    when_sealed,
)

# -- RequestHandoff ----------------------------------------------------------------------------------


def test_requesting_a_handoff_records_the_package_the_shell_built():
    history = given(register(), append())
    env = when_sealed(history, request("bob", "full_handoff", request_data={"why": "vacation"}))
    assert env.event == HandoffRequested(
        handoff_id="w-0001",
        sequence_number=3,
        source_agent="alice",
        target_agent="bob",
        request_type="full_handoff",
        package=PACKAGE,
        request_data={"why": "vacation"},
    )
    assert env.event.package.from_sequence == 1 and env.event.package.to_sequence == 2
    assert env.event.package.sha256 == PACKAGE.sha256
    assert env.actor == "alice"


def test_a_request_defaults_to_a_context_transfer():
    assert when(given(register()), request("bob"))[0].request_type == "context_transfer"


def test_a_requested_handoff_is_pending_and_its_target_becomes_a_participant():
    history = requested("bob")
    state = state_of(history)
    handoff = state.handoffs[handoff_ids(history)[0]]
    assert (handoff.status, handoff.source_agent, handoff.target_agent) == ("pending", "alice", "bob")
    assert state.agent_to == "bob"
    assert "bob" in state.participants


def test_requesting_a_handoff_to_the_holder_is_refused():
    error = refused(given(register("alice")), request("alice"), InvalidArgument)
    assert error.details == {"field": "targetAgent"}


def test_requesting_a_handoff_of_a_missing_session_is_refused():
    refused([], request(), SessionNotFound)


def test_requesting_a_handoff_of_a_closed_session_is_refused():
    refused(given(register(), close()), request(), SessionNotActive)


def test_requesting_a_handoff_without_a_package_is_a_bug_of_the_shell():
    state = state_of(given(register()))
    with pytest.raises(AssertionError):
        decide(state, request(), Ctx(now="t", new_id=lambda: "x", package=None))


def test_the_requester_is_always_the_current_holder():
    history = given(register("alice"), request("bob"), accept(H1, "bob"))
    assert when(history, request("carol"))[0].source_agent == "bob"


# -- AcceptHandoff -----------------------------------------------------------------------------------


def test_the_target_can_accept_a_pending_handoff():
    history = requested("bob")
    env = when_sealed(history, accept(H1, "bob"))
    assert env.event == HandoffAccepted(handoff_id=handoff_ids(history)[0], agent="bob")
    assert env.actor == "bob"


def test_accepting_a_transfer_makes_the_target_the_holder():
    state = state_of(given(register(), request("bob"), accept(H1, "bob")))
    assert state.holder == "bob"
    assert state.handoffs[handoff_ids(given(register(), request("bob")))[0]].accepted_by == "bob"


def test_accepting_a_collaboration_leaves_the_holder_in_place():
    state = state_of(given(register(), request("bob", "collaboration"), accept(H1, "bob")))
    assert state.holder == "alice"


def test_another_agent_cannot_accept_a_handoff_addressed_to_someone_else():
    refused(requested("bob"), accept(H1, "carol"), NotPermitted)


def test_second_agent_cannot_accept_an_accepted_handoff():
    history = given(register(), request("bob"), accept(H1, "bob"))
    error = refused(history, accept(H1, "carol"), HandoffConflict)
    assert error.details["status"] == "accepted"
    assert "'bob'" in error.message


def test_the_target_cannot_accept_the_same_handoff_twice():
    refused(given(register(), request("bob"), accept(H1, "bob")), accept(H1, "bob"), HandoffConflict)


def test_accepting_an_unknown_handoff_is_refused():
    error = refused(given(register()), accept("nope"), HandoffNotFound)
    assert error.details == {"handoffId": "nope"}


@pytest.mark.parametrize(
    "ending",
    [reject(H1, "bob"), cancel(H1, "alice"), expire_handoff(H1)],
    ids=["rejected", "cancelled", "expired"],
)
def test_a_finished_handoff_cannot_be_accepted(ending):
    refused(given(register(), request("bob"), ending), accept(H1, "bob"), HandoffConflict)


# -- CompleteHandoff ---------------------------------------------------------------------------------


def test_the_accepting_agent_can_complete_a_handoff_with_a_result():
    history = given(register(), request("bob"), accept(H1))
    assert when(history, complete(H1, "bob", result={"ok": True})) == [
        HandoffCompleted(handoff_id=handoff_ids(history)[0], agent="bob", result={"ok": True}, session_completed=False)
    ]


def test_only_the_accepting_agent_can_complete_a_handoff():
    history = given(register(), request("bob"), accept(H1))
    refused(history, complete(H1, "alice"), NotPermitted)


def test_a_pending_handoff_cannot_be_completed():
    refused(requested("bob"), complete(H1, "bob"), HandoffConflict)


def test_a_completed_handoff_cannot_be_completed_again():
    refused(given(register(), request("bob"), accept(H1), complete(H1)), complete(H1), HandoffConflict)


def test_completing_an_unknown_handoff_is_refused():
    refused(given(register()), complete("nope"), HandoffNotFound)


def test_completing_a_full_handoff_completes_the_session():
    history = given(register(), request("bob", "full_handoff"), accept(H1))
    env = when_sealed(history, complete(H1))
    assert env.event.session_completed is True
    assert state_of(history + [env]).status == "completed"


@pytest.mark.parametrize("request_type", ["context_transfer", "collaboration"])
def test_completing_a_transfer_or_collaboration_leaves_the_session_active(request_type):
    history = given(register(), request("bob", request_type), accept(H1))
    env = when_sealed(history, complete(H1))
    assert env.event.session_completed is False
    state = state_of(history + [env])
    assert state.status == "active"
    assert state.handoffs[env.event.handoff_id].status == "completed"


# -- RejectHandoff -----------------------------------------------------------------------------------


def test_the_target_can_reject_a_pending_handoff_with_a_reason():
    history = requested("bob")
    assert when(history, reject(H1, "bob", "no time")) == [
        HandoffRejected(handoff_id=handoff_ids(history)[0], agent="bob", reason="no time")
    ]


def test_only_the_target_can_reject_a_handoff():
    refused(requested("bob"), reject(H1, "alice"), NotPermitted)


def test_an_accepted_handoff_cannot_be_rejected():
    refused(given(register(), request("bob"), accept(H1)), reject(H1, "bob"), HandoffConflict)


def test_rejecting_an_unknown_handoff_is_refused():
    refused(given(register()), reject("nope"), HandoffNotFound)


def test_a_rejected_handoff_leaves_the_holder_in_place():
    state = state_of(given(register(), request("bob"), reject(H1, "bob")))
    assert state.holder == "alice"
    assert next(iter(state.handoffs.values())).status == "rejected"


# -- CancelHandoff -----------------------------------------------------------------------------------


def test_the_requester_can_cancel_a_pending_handoff():
    history = requested("bob")
    env = when_sealed(history, cancel(H1, "alice", reason="changed my mind"))
    assert env.event == HandoffCancelled(handoff_id=handoff_ids(history)[0], agent="alice", reason="changed my mind")
    assert env.actor == "alice"


def test_the_requester_can_cancel_an_accepted_handoff():
    history = given(register(), request("bob", "collaboration"), accept(H1))
    assert when(history, cancel(H1, "alice"))[0].agent == "alice"


def test_only_the_requester_can_cancel_a_handoff():
    refused(requested("bob"), cancel(H1, "bob"), NotPermitted)


def test_a_completed_handoff_cannot_be_cancelled():
    refused(given(register(), request("bob", "collaboration"), accept(H1), complete(H1)), cancel(H1), HandoffConflict)


def test_a_cancelled_handoff_cannot_be_cancelled_again():
    refused(given(register(), request("bob"), cancel(H1)), cancel(H1), HandoffConflict)


def test_cancelling_an_unknown_handoff_is_refused():
    refused(given(register()), cancel("nope"), HandoffNotFound)


# -- ExpireHandoff -----------------------------------------------------------------------------------


def test_expiring_a_pending_handoff_is_attributed_to_the_system():
    history = requested("bob")
    env = when_sealed(history, expire_handoff(H1, reason="ttl"))
    assert env.event == HandoffExpired(handoff_id=handoff_ids(history)[0], reason="ttl")
    assert env.actor == SYSTEM_ACTOR
    assert state_of(history + [env]).handoffs[env.event.handoff_id].status == "expired"


def test_expiring_an_accepted_handoff_is_allowed():
    assert when(given(register(), request("bob"), accept(H1)), expire_handoff(H1))[0].reason == "expired"


def test_a_finished_handoff_cannot_expire():
    refused(given(register(), request("bob"), reject(H1, "bob")), expire_handoff(H1), HandoffConflict)


def test_expiring_an_unknown_handoff_is_refused():
    refused(given(register()), expire_handoff("nope"), HandoffNotFound)


# -- handoffs of a session that is no longer active --------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [accept(H1), complete(H1), reject(H1), cancel(H1), expire_handoff(H1)],
    ids=["accept", "complete", "reject", "cancel", "expire"],
)
def test_no_handoff_command_is_taken_on_a_closed_session(command):
    history = given(register(), request("bob"), accept(H1), request("carol"), close("alice"))
    refused(history, command, SessionNotActive)


def test_two_handoffs_of_one_session_are_independent():
    history = given(register(), request("bob", "collaboration"), request("carol", "collaboration"), accept(H2, "carol"))
    state = state_of(history)
    first, second = handoff_ids(history)
    assert (state.handoffs[first].status, state.handoffs[second].status) == ("pending", "accepted")
