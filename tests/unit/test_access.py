"""CONTRACT §7 in the kernel: the principal a command carries decides who may write what, and the read rules."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import event, settings
from hypothesis import given as hypothesis_given
from hypothesis import strategies as st

from handoff.kernel.access import may_read_inbox, may_see_handoff, may_see_session, members
from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    CancelHandoff,
    CloseSession,
    Command,
    CompleteHandoff,
    RegisterSession,
    RejectHandoff,
    RequestHandoff,
    fingerprint,
)
from handoff.kernel.decide import execute
from handoff.kernel.errors import HandoffError, NotPermitted
from handoff.kernel.events import Envelope, HandoffRequested
from handoff.kernel.principal import Principal

from .support import (
    H1,
    accept,
    append,
    cancel,
    close,
    complete,
    ctx,
    given,
    refused,
    register,
    reject,
    request,
    state_of,
    when_sealed,
)

ALICE, BOB, MALLORY = Principal(agent="alice"), Principal(agent="bob"), Principal(agent="mallory")
AUDITOR, OPERATOR = Principal(agent="audra", role="auditor"), Principal(agent="otto", role="operator")


def by(principal: Principal, command: Command) -> Command:
    return msgspec.structs.replace(command, principal=principal)


def requested_by_alice(request_type: str = "context_transfer") -> list[Envelope]:
    return given(by(ALICE, register()), by(ALICE, append()), by(ALICE, request("bob", request_type)))


# Acting fields and roles.


def test_a_principal_cannot_register_a_session_as_another_agent() -> None:
    refused([], by(MALLORY, register("alice")), NotPermitted)


def test_a_principal_cannot_append_as_another_agent() -> None:
    refused(requested_by_alice(), by(MALLORY, append(agent="alice")), NotPermitted)


def test_an_omitted_agent_is_the_principal_and_the_actor_is_always_the_principal() -> None:
    history = given(by(ALICE, register()))
    env = when_sealed(history, by(ALICE, append()))
    assert (env.actor, env.event.agent) == ("alice", "alice")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "command",
    [accept(H1, "bob"), reject(H1, "bob"), complete(H1, "bob"), cancel(H1, "alice"), close("alice")],
    ids=["accept", "reject", "complete", "cancel", "close"],
)
def test_no_handoff_or_close_command_acts_as_another_agent(command: Command) -> None:
    refused(requested_by_alice(), by(MALLORY, command), NotPermitted)


def test_only_the_holder_requests_a_handoff() -> None:
    history = given(by(ALICE, register()))
    refused(history, by(MALLORY, request("mallory")), NotPermitted)
    refused(history, by(MALLORY, request("mallory", agent="mallory")), NotPermitted)


def test_without_auth_a_named_requester_must_be_the_holder() -> None:
    history = given(register())
    refused(history, request("bob", agent="carol"), NotPermitted)
    assert when_sealed(history, request("bob", agent="alice")).actor == "alice"


def test_a_pending_target_is_not_yet_a_member_and_cannot_append() -> None:
    history = requested_by_alice()
    refused(history, by(BOB, append()), NotPermitted)
    accepted = given(by(BOB, accept(H1, "bob")), after=history, prefix="a")
    assert when_sealed(accepted, by(BOB, append())).actor == "bob"


def test_a_collaboration_target_that_accepted_may_append_but_not_request() -> None:
    history = given(by(BOB, accept(H1, "bob")), after=requested_by_alice("collaboration"), prefix="a")
    assert when_sealed(history, by(BOB, append())).actor == "bob"
    refused(history, by(BOB, request("carol")), NotPermitted)


def test_the_registering_agent_closes_after_handing_the_session_over() -> None:
    history = given(by(BOB, accept(H1, "bob")), after=requested_by_alice(), prefix="a")
    assert when_sealed(history, by(ALICE, close("alice"))).actor == "alice"
    assert when_sealed(history, by(BOB, close("bob"))).actor == "bob"
    refused(history, by(MALLORY, close("mallory")), NotPermitted)


def test_an_operator_closes_any_session_and_does_nothing_else() -> None:
    history = requested_by_alice()
    assert when_sealed(history, by(OPERATOR, close("otto"))).actor == "otto"
    for command in (register("otto", key="s2"), append(), request("otto"), accept(H1, "otto")):
        refused(history, by(OPERATOR, command), NotPermitted)


@pytest.mark.parametrize("name", ["system"])
def test_nobody_acts_as_or_hands_off_to_the_engine(name: str) -> None:
    refused([], register(name), NotPermitted)
    refused(given(register()), request(name), NotPermitted)
    refused([], by(Principal(agent=name), register(name)), NotPermitted)


def test_the_principal_is_part_of_the_idempotency_fingerprint_only_when_there_is_one() -> None:
    plain = append()
    assert b"principal" not in fingerprint(plain)
    assert fingerprint(by(ALICE, plain)) != fingerprint(by(BOB, plain))


# Properties: whatever the history and the command, the rules hold.

AGENT_NAMES = ("alice", "bob", "carol", "mallory")
STEPS = ("request", "accept", "reject", "append", "cancel", "complete")


def _step(kind: str, agent: str, target: str, rtype: str, history: list[Envelope]) -> Command:
    hids = [e.event.handoff_id for e in history if isinstance(e.event, HandoffRequested)]
    hid = hids[-1] if hids else "none"
    command: dict[str, Command] = {
        "request": request(target, rtype),
        "accept": accept(hid, agent),
        "reject": reject(hid, agent),
        "append": append(),
        "cancel": cancel(hid, agent),
        "complete": complete(hid, agent),
        "close": close(agent),
    }
    return command[kind]


def _parties(history: list[Envelope]) -> list[str]:
    """The agents the session's state names (holder, sources, targets, accepters): likely to be allowed."""
    state = state_of(history)
    assert state is not None
    names = [state.holder, state.agent_from]
    for h in state.handoffs.values():
        names += [h.source_agent, h.target_agent] + ([h.accepted_by] if h.accepted_by else [])
    return names


@st.composite
def histories(draw: Any) -> list[Envelope]:
    """A session alice registered, then a few steps, each by a party of the session or a stranger, kept if accepted."""
    history = given(by(ALICE, register()))
    for _ in range(draw(st.integers(0, 8))):
        agent = draw(st.sampled_from(_parties(history) * 3 + list(AGENT_NAMES)))
        target = draw(st.sampled_from(AGENT_NAMES))
        rtype = draw(st.sampled_from(["context_transfer", "full_handoff", "collaboration"]))
        command = by(Principal(agent=agent), _step(draw(st.sampled_from(STEPS)), agent, target, rtype, history))
        try:
            _, env = execute(state_of(history), command, ctx(prefix=f"p{len(history)}"))
        except HandoffError:
            continue
        history.append(env)
    return history


@st.composite
def attempts(draw: Any) -> tuple[list[Envelope], Principal, Command]:
    """A history, a principal (often a party of it) and a command it sends, usually acting as itself."""
    history = draw(histories())
    role = draw(st.sampled_from(["agent", "agent", "agent", "auditor", "operator"]))
    principal = Principal(agent=draw(st.sampled_from(_parties(history) * 2 + list(AGENT_NAMES))), role=role)
    acting = draw(st.sampled_from([principal.agent] * 4 + list(AGENT_NAMES)))
    kind = draw(st.sampled_from(STEPS + ("close",)))
    step = _step(kind, acting, draw(st.sampled_from(AGENT_NAMES)), "context_transfer", history)
    if isinstance(step, AppendContext) and draw(st.booleans()):
        step = msgspec.structs.replace(step, agent=acting)
    return history, principal, by(principal, step)


def _acting(command: Command) -> str | None:
    if isinstance(command, RegisterSession):
        return command.agent_from
    return getattr(command, "agent", None)


@settings(max_examples=400, deadline=None)
@hypothesis_given(attempt=attempts())
def test_every_accepted_command_obeys_the_rules_of_contract_section_7(
    attempt: tuple[list[Envelope], Principal, Command],
) -> None:
    history, principal, command = attempt
    before = state_of(history)
    assert before is not None
    try:
        after, env = execute(before, command, ctx(prefix="q"))
    except HandoffError:  # NOT_PERMITTED or any other rule: refusals are checked by the examples above
        event("refused")
        return
    event(f"accepted {type(command).__name__} by {principal.role}")
    assert env.actor == principal.agent
    assert principal.role != "auditor"
    acting = _acting(command)
    assert acting is None or acting == principal.agent
    if principal.role == "operator":
        assert isinstance(command, CloseSession)
    if isinstance(command, RequestHandoff):
        assert principal.agent == before.holder
    if isinstance(command, AppendContext):
        assert principal.agent in members(before)
    if isinstance(command, CloseSession) and principal.role == "agent":
        assert principal.agent in (before.holder, before.agent_from)
    if isinstance(command, AcceptHandoff | RejectHandoff):
        assert before.handoffs[command.handoff_id].target_agent == principal.agent
    if isinstance(command, CompleteHandoff):
        assert before.handoffs[command.handoff_id].accepted_by == principal.agent
    if isinstance(command, CancelHandoff):
        assert before.handoffs[command.handoff_id].source_agent == principal.agent
    assert after.version == before.version + 1


principals = st.builds(
    Principal,
    agent=st.sampled_from(AGENT_NAMES + ("audra", "otto")),
    role=st.sampled_from(["agent", "agent", "agent", "auditor", "operator"]),
)


@settings(max_examples=200, deadline=None)
@hypothesis_given(history=histories(), principal=principals)
def test_whoever_may_append_may_also_read_the_session(history: list[Envelope], principal: Principal) -> None:
    state = state_of(history)
    assert state is not None
    accepted = [h.accepted_by for h in state.handoffs.values() if h.accepted_by]
    visible = may_see_session(principal, state.agent_from, state.holder, accepted)
    may_append = principal.role == "agent" and principal.agent in members(state)
    assert not may_append or visible
    assert visible == (principal.role != "agent" or principal.agent in members(state))


def test_a_pending_target_sees_the_handoff_but_not_the_session() -> None:
    assert not may_see_session(BOB, "alice", "alice", [])
    assert may_see_handoff(BOB, "bob", "pending", session_visible=False)
    assert not may_see_handoff(BOB, "bob", "rejected", session_visible=False)
    assert not may_see_handoff(MALLORY, "bob", "pending", session_visible=False)


def test_an_inbox_is_read_by_its_agent_auditors_and_operators() -> None:
    assert may_read_inbox(BOB, "bob") and may_read_inbox(AUDITOR, "bob") and may_read_inbox(OPERATOR, "bob")
    assert not may_read_inbox(MALLORY, "bob")
    assert may_read_inbox(None, "bob")  # --auth none: as today


@settings(max_examples=200, deadline=None)
@hypothesis_given(attempt=attempts())
def test_acting_as_another_agent_or_writing_as_an_auditor_is_always_not_permitted(
    attempt: tuple[list[Envelope], Principal, Command],
) -> None:
    history, principal, command = attempt
    acting = _acting(command)
    if principal.role != "auditor" and (acting is None or acting == principal.agent):
        return
    with pytest.raises(NotPermitted):
        execute(state_of(history), command, ctx(prefix="q"))
