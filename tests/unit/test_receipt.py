"""Idempotency receipts: what a write returned, and how a retry is matched against it."""

from __future__ import annotations

import pytest

from handoff.kernel.commands import fingerprint
from handoff.kernel.decide import execute
from handoff.kernel.errors import IdempotencyMismatch
from handoff.kernel.receipt import check_retry, command_digest, receipt_of

from .support import H1, accept, append, ctx, given, handoff_ids, register, request, state_of


def _receipt(history, command):
    state, env = execute(state_of(history), command, ctx())
    return receipt_of(state, env, command_digest(command)), env


def test_the_idempotency_key_is_recorded_in_the_envelope():
    _, env = _receipt(given(register()), append(idempotency_key="k1"))
    assert env.idempotency_key == "k1"


def test_a_receipt_reports_the_session_right_after_the_write():
    receipt, env = _receipt(given(register()), append(idempotency_key="k1"))
    assert receipt.version == env.version == 2
    assert (receipt.session.version, receipt.session.status, receipt.session.holder) == (2, "active", "alice")
    assert receipt.handoff is None


def test_a_receipt_of_a_handoff_event_carries_the_handoff_state():
    history = given(register(), request("bob"))
    receipt, env = _receipt(history, accept(handoff_ids(history)[0], "bob", idempotency_key="k"))
    assert receipt.handoff is not None
    assert (receipt.handoff.status, receipt.handoff.accepted_by) == ("accepted", "bob")
    assert receipt.session.holder == "bob"


def test_a_retry_with_the_same_arguments_matches_its_receipt():
    receipt, _ = _receipt(given(register()), append("x", idempotency_key="k1"))
    check_retry(receipt, append("x", idempotency_key="k1"))


def test_a_retry_with_a_different_expected_version_still_matches():
    receipt, _ = _receipt(given(register()), append("x", idempotency_key="k1", expected_version=1))
    check_retry(receipt, append("x", idempotency_key="k1", expected_version=2))


@pytest.mark.parametrize(
    "retry",
    [
        append("y", idempotency_key="k1"),
        append("x", "decision", idempotency_key="k1"),
        append("x", agent="carol", idempotency_key="k1"),
        append("x", metadata={"a": 1}, idempotency_key="k1"),
        request("x", idempotency_key="k1"),
    ],
    ids=["content", "type", "agent", "metadata", "other-command"],
)
def test_a_retry_with_different_arguments_is_an_idempotency_mismatch(retry):
    receipt, _ = _receipt(given(register()), append("x", idempotency_key="k1"))
    with pytest.raises(IdempotencyMismatch) as caught:
        check_retry(receipt, retry)
    assert caught.value.code == "IDEMPOTENCY_MISMATCH"
    assert caught.value.details == {"idempotencyKey": "k1"}


def test_the_fingerprint_ignores_idempotency_key_and_expected_version_but_not_the_command_type():
    assert fingerprint(append("x", idempotency_key="a", expected_version=1)) == fingerprint(append("x"))
    assert fingerprint(accept(H1, "bob")) != fingerprint(append("x"))


def test_the_fingerprint_does_not_depend_on_metadata_key_order():
    assert fingerprint(append(metadata={"a": 1, "b": 2})) == fingerprint(append(metadata={"b": 2, "a": 1}))


def test_an_error_turns_into_the_failure_body_of_the_contract():
    with pytest.raises(IdempotencyMismatch) as caught:
        check_retry(_receipt(given(register()), append("x", idempotency_key="k"))[0], append("y", idempotency_key="k"))
    body = caught.value.to_dict()
    assert body["success"] is False and body["code"] == "IDEMPOTENCY_MISMATCH"
    assert isinstance(body["error"], str) and body["idempotencyKey"] == "k"
