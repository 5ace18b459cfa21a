"""Rules of the session commands: register, append, close, expire, and expectedVersion."""

from __future__ import annotations

import pytest

from handoff.kernel.decide import SYSTEM_ACTOR
from handoff.kernel.errors import NotPermitted, SessionExists, SessionNotActive, SessionNotFound, VersionConflict
from handoff.kernel.events import ContextAppended, SessionClosed, SessionExpired, SessionRegistered

from .support import (
    H1,
    H3,
    KEY,
    accept,
    append,
    close,
    complete,
    expire_session,
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

# -- RegisterSession ---------------------------------------------------------------------------------


def test_registering_a_new_session_records_its_agent_and_metadata():
    assert when([], register("alice", metadata={"project": "x"})) == [
        SessionRegistered(agent_from="alice", metadata={"project": "x"}, sequence_number=1)
    ]


def test_registration_is_version_one_attributed_to_the_registering_agent_and_starts_the_chain():
    env = when_sealed([], register("alice"))
    assert (env.version, env.actor, env.prev_hash) == (1, "alice", "0" * 64)


def test_registering_an_existing_session_is_refused():
    error = refused(given(register()), register("bob"), SessionExists)
    assert error.details == {"sessionKey": KEY}


def test_registering_a_closed_session_again_is_refused():
    refused(given(register(), close()), register(), SessionExists)


def test_registering_with_expected_version_zero_succeeds():
    assert when([], register(expected_version=0))[0] == SessionRegistered(agent_from="alice")


def test_registering_with_a_nonzero_expected_version_is_a_version_conflict():
    error = refused([], register(expected_version=3), VersionConflict)
    assert error.details["currentVersion"] == 0
    assert error.details["expectedVersion"] == 3


def test_registered_session_is_active_and_held_by_its_registering_agent():
    state = state_of(given(register("alice")))
    assert state is not None
    assert (state.status, state.holder, state.participants, state.last_sequence) == ("active", "alice", ("alice",), 1)


# -- AppendContext -----------------------------------------------------------------------------------


def test_appending_to_a_missing_session_is_refused():
    refused([], append(), SessionNotFound)


def test_appending_takes_the_next_sequence_number_after_the_registration_entry():
    assert when(given(register()), append("hi")) == [
        ContextAppended(sequence_number=2, context_type="message", content="hi", agent="alice", tokens=1, metadata={})
    ]


def test_sequence_numbers_follow_each_other_without_gaps():
    history = given(register(), append("a"), append("b"), append("c"))
    assert [env.event.sequence_number for env in history[1:]] == [2, 3, 4]
    assert when(history, append("d"))[0].sequence_number == 5


def test_handoff_request_takes_a_sequence_number_so_the_next_entry_follows_it():
    history = requested()
    assert history[-1].event.sequence_number == 3
    assert when(history, append("after"))[0].sequence_number == 4


def test_an_append_without_agent_is_attributed_to_the_holder():
    env = when_sealed(given(register("alice")), append("note"))
    assert env.event.agent == "alice"
    assert env.actor == "alice"


def test_an_append_without_agent_after_a_transfer_is_attributed_to_the_new_holder():
    history = given(register(), append(), request("bob"), accept(H1, "bob"))
    assert when(history, append("note"))[0].agent == "bob"


def test_an_append_with_an_agent_is_attributed_to_that_agent_who_becomes_a_participant():
    history = given(register(), append("x", agent="carol"))
    assert history[-1].event.agent == "carol"
    assert state_of(history).participants == ("alice", "carol")


def test_appending_records_the_metadata_given():
    event = when(given(register()), append("t", "task", metadata={"taskId": "T1"}))[0]
    assert event.metadata == {"taskId": "T1"} and event.context_type == "task"


def test_appending_to_a_closed_session_is_refused():
    error = refused(given(register(), close()), append(), SessionNotActive)
    assert error.details["status"] == "closed"


def test_appending_to_an_expired_session_is_refused():
    refused(given(register(), expire_session()), append(), SessionNotActive)


def test_appending_to_a_completed_session_is_refused():
    history = given(register(), request("bob", "full_handoff"), accept(H1), complete(H1))
    assert state_of(history).status == "completed"
    refused(history, append(), SessionNotActive)


def test_appending_with_the_current_version_succeeds():
    history = given(register(), append())
    assert when_sealed(history, append(expected_version=2)).version == 3


@pytest.mark.parametrize("expected", [0, 1, 3, 99])
def test_appending_with_a_stale_or_future_version_is_a_version_conflict(expected):
    error = refused(given(register(), append()), append(expected_version=expected), VersionConflict)
    assert error.details == {"sessionKey": KEY, "currentVersion": 2, "expectedVersion": expected}


def test_version_is_checked_after_existence():
    refused([], append(expected_version=5), SessionNotFound)


def test_envelopes_count_the_versions_of_the_stream_and_chain_their_hashes():
    history = given(register(), append(), append())
    assert [env.version for env in history] == [1, 2, 3]
    assert [env.prev_hash for env in history[1:]] == [env.hash for env in history[:-1]]


def test_sessions_have_independent_versions_and_sequences():
    history = given(register(key="a"), register(key="b"), append(key="b"), append(key="a"))
    assert [(env.session_key, env.version) for env in history] == [("a", 1), ("b", 1), ("b", 2), ("a", 2)]
    assert history[3].prev_hash == history[0].hash


# -- CloseSession ------------------------------------------------------------------------------------


def test_the_registering_agent_can_close_the_session():
    assert when(given(register()), close("alice", reason="done")) == [
        SessionClosed(agent="alice", reason="done", cancelled_handoffs=[])
    ]


def test_a_participant_who_appended_can_close_the_session():
    assert when(given(register(), append(agent="carol")), close("carol"))[0].agent == "carol"


def test_a_handoff_target_is_a_participant_and_can_close_the_session():
    assert when(requested("bob"), close("bob"))[0].agent == "bob"


def test_an_outsider_cannot_close_the_session():
    refused(given(register()), close("mallory"), NotPermitted)


def test_closing_cancels_the_open_handoffs_only():
    history = given(register(), request("bob"), accept(H1), request("carol"), request("dave"), reject(H3, "dave"))
    ids = handoff_ids(history)
    assert len(ids) == 3
    event = when(history, close())[0]
    assert event.cancelled_handoffs == ids[:2]
    state = state_of(history + [when_sealed(history, close())])
    assert {h: state.handoffs[h].status for h in ids} == {ids[0]: "cancelled", ids[1]: "cancelled", ids[2]: "rejected"}
    assert state.status == "closed"


def test_closing_a_closed_session_is_refused():
    refused(given(register(), close()), close(), SessionNotActive)


def test_closing_a_missing_session_is_refused():
    refused([], close(), SessionNotFound)


def test_closing_with_a_stale_version_is_a_version_conflict():
    refused(given(register(), append()), close(expected_version=1), VersionConflict)


# -- ExpireSession -----------------------------------------------------------------------------------


def test_expiring_a_session_is_attributed_to_the_system_and_expires_its_open_handoffs():
    history = requested()
    env = when_sealed(history, expire_session(reason="idle"))
    assert env.event == SessionExpired(reason="idle", cancelled_handoffs=handoff_ids(history))
    assert env.actor == SYSTEM_ACTOR
    state = state_of(history + [env])
    assert state.status == "expired"
    assert state.handoffs[handoff_ids(history)[0]].status == "expired"


def test_expiring_an_expired_session_is_refused():
    refused(given(register(), expire_session()), expire_session(), SessionNotActive)


def test_expiring_a_missing_session_is_refused():
    refused([], expire_session(), SessionNotFound)
