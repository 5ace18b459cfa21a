"""The per-session caps that keep a session's decision state small: participants and open handoffs."""

from __future__ import annotations

from handoff.kernel.errors import LimitExceeded
from handoff.kernel.events import ContextAppended, HandoffRequested
from handoff.kernel.types import Limits

from .support import append, given, refused, register, request, when

CAPPED = Limits(participants_max=3, open_handoffs_max=2)


def test_a_new_agent_may_append_while_the_session_has_room_for_it():
    history = given(register(), append(agent="bob"))
    assert isinstance(when(history, append(agent="carol"), limits=CAPPED)[0], ContextAppended)


def test_a_new_agent_cannot_append_to_a_session_with_the_most_participants_it_may_have():
    history = given(register(), append(agent="bob"), append(agent="carol"))
    error = refused(history, append(agent="dave"), LimitExceeded, limits=CAPPED)
    assert "3 participants" in error.message


def test_a_participant_may_still_append_when_the_session_is_full():
    history = given(register(), append(agent="bob"), append(agent="carol"))
    assert isinstance(when(history, append(agent="bob"), limits=CAPPED)[0], ContextAppended)


def test_a_handoff_cannot_be_requested_beyond_the_open_handoffs_cap():
    history = given(register(), request(target="bob"), request(target="carol"))
    error = refused(history, request(target="dave"), LimitExceeded, limits=Limits(open_handoffs_max=2))
    assert "2 open handoffs" in error.message


def test_a_handoff_can_be_requested_while_fewer_are_open_than_the_cap():
    history = given(register(), request(target="bob"))
    assert isinstance(when(history, request(target="carol"), limits=CAPPED)[0], HandoffRequested)


def test_a_handoff_to_a_new_agent_cannot_make_the_participants_more_than_the_cap():
    history = given(register(), append(agent="carol"), append(agent="dave"))
    refused(history, request(target="bob"), LimitExceeded, limits=CAPPED)
    assert isinstance(when(history, request(target="carol"), limits=CAPPED)[0], HandoffRequested)
