"""Commands are their tools' argument structs: each field and limit is declared once, in the kernel."""

from __future__ import annotations

import msgspec
import pytest

from handoff.kernel import commands as C
from handoff.kernel.errors import LimitExceeded
from handoff.kernel.limits import check_limits
from handoff.kernel.types import Limits

SESSION_ARGS = [C.RegisterSessionArgs, C.UpdateContextArgs, C.RequestHandoffArgs, C.CloseSessionArgs]
HANDOFF_ARGS = [C.AcceptHandoffArgs, C.CompleteHandoffArgs, C.RejectHandoffArgs, C.CancelHandoffArgs]
COMMAND_OF = {
    C.RegisterSessionArgs: C.RegisterSession,
    C.UpdateContextArgs: C.AppendContext,
    C.RequestHandoffArgs: C.RequestHandoff,
    C.CloseSessionArgs: C.CloseSession,
    C.AcceptHandoffArgs: C.AcceptHandoff,
    C.CompleteHandoffArgs: C.CompleteHandoff,
    C.RejectHandoffArgs: C.RejectHandoff,
    C.CancelHandoffArgs: C.CancelHandoff,
}


def _names(struct: type[msgspec.Struct]) -> set[str]:
    return {f.name for f in msgspec.structs.fields(struct)}


@pytest.mark.parametrize("args", SESSION_ARGS, ids=lambda a: a.__name__)
def test_a_session_tools_command_has_exactly_its_arguments_and_the_principal(args):
    assert issubclass(COMMAND_OF[args], args)
    assert _names(COMMAND_OF[args]) - _names(args) == {"principal"}  # set by the adapter, never by a client


@pytest.mark.parametrize("args", HANDOFF_ARGS, ids=lambda a: a.__name__)
def test_a_handoff_tools_command_adds_only_the_session_it_is_addressed_to(args):
    assert issubclass(COMMAND_OF[args], args)
    assert _names(COMMAND_OF[args]) - _names(args) == {"session_key", "principal"}


def test_a_handoff_tools_arguments_become_a_command_addressed_to_the_given_session():
    args = C.CompleteHandoffArgs(handoff_id="h1", agent="bob", result={"ok": 1}, idempotency_key="k")
    assert C.for_session(args, "s1") == C.CompleteHandoff(
        session_key="s1", handoff_id="h1", agent="bob", result={"ok": 1}, idempotency_key="k"
    )


def test_a_session_tools_arguments_become_its_command_unchanged():
    args = C.UpdateContextArgs(session_key="s1", context_type="task", content="x", expected_version=3)
    command = C.command_of(args)
    assert type(command) is C.AppendContext
    assert msgspec.structs.asdict(command) == {**msgspec.structs.asdict(args), "principal": None}


def test_the_limits_of_a_handoff_tools_arguments_are_checked_before_its_session_is_known():
    with pytest.raises(LimitExceeded) as caught:
        check_limits(C.AcceptHandoffArgs(handoff_id="h1", agent="a" * 101), Limits())
    assert caught.value.to_dict()["field"] == "agent"


def test_a_command_record_with_an_empty_idempotency_key_does_not_decode():
    record = b'{"command":"CloseSession","sessionKey":"s1","agent":"bob","idempotencyKey":""}'
    with pytest.raises(msgspec.ValidationError, match="idempotencyKey"):
        msgspec.json.decode(record, type=C.Command)
