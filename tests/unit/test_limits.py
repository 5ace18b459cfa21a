"""The size and range limits: over a limit is LIMIT_EXCEEDED; empty or malformed is INVALID_ARGUMENT."""

from __future__ import annotations

import msgspec
import pytest

from handoff.kernel.commands import Command
from handoff.kernel.decide import execute
from handoff.kernel.errors import InvalidArgument, LimitExceeded
from handoff.kernel.limits import check_limits
from handoff.kernel.types import Limits

from .support import (
    accept,
    append,
    cancel,
    close,
    complete,
    ctx,
    expire_handoff,
    given,
    register,
    reject,
    request,
    state_of,
)

LIMITS = Limits()
BIG_OBJECT = {"x": "a" * (64 * 1024)}  # 64 KiB of string plus the JSON around it
FITS_OBJECT = {"x": "a" * (64 * 1024 - len('{"x":""}'))}


def _raises(command: Command, error: type[Exception], limits: Limits = LIMITS) -> Exception:
    with pytest.raises(error) as caught:
        check_limits(command, limits)
    assert type(caught.value) is error
    return caught.value


@pytest.mark.parametrize(
    "command",
    [
        register("a" * 100, key="k" * 255, metadata=FITS_OBJECT, idempotency_key="i" * 128),
        append("c" * (1024 * 1024), agent="a" * 100, metadata=FITS_OBJECT),
        append("é" * (512 * 1024)),
        request("b" * 100, request_data=FITS_OBJECT, token_budget=100),
        request(token_budget=200_000),
        accept("h" * 255, "b" * 100),
        complete("h", result=FITS_OBJECT),
        reject("h", reason="r" * 4096),
        cancel("h"),
        close("a" * 100),
        expire_handoff("h" * 255),
    ],
    ids=lambda c: type(c).__name__,
)
def test_a_command_exactly_at_every_limit_is_accepted(command):
    check_limits(command, LIMITS)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (register(key="k" * 256), "sessionKey"),
        (register("a" * 101), "agentFrom"),
        (register(metadata=BIG_OBJECT), "metadata"),
        (register(idempotency_key="i" * 129), "idempotencyKey"),
        (append(agent="a" * 101), "agent"),
        (append(metadata=BIG_OBJECT), "metadata"),
        (append("c" * (1024 * 1024 + 1)), "content"),
        (append("é" * (512 * 1024) + "c"), "content"),
        (request("b" * 101), "targetAgent"),
        (request(request_data=BIG_OBJECT), "requestData"),
        (request(token_budget=99), "tokenBudget"),
        (request(token_budget=200_001), "tokenBudget"),
        (accept("h" * 256), "handoffId"),
        (accept("h", "b" * 101), "agent"),
        (complete("h", result=BIG_OBJECT), "result"),
        (reject("h", "b" * 101), "agent"),
        (cancel("h", "a" * 101), "agent"),
        (close("a" * 101), "agent"),
        (expire_handoff("h" * 256), "handoffId"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_a_command_over_a_limit_is_limit_exceeded(command, field):
    assert _raises(command, LimitExceeded).details["field"] == field


def test_content_is_measured_in_utf8_bytes_not_characters():
    error = _raises(append("€" * 349_526), LimitExceeded)  # 3 bytes each: 1 048 578 bytes
    assert "bytes" in str(error)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (register(key=""), "sessionKey"),
        (register(""), "agentFrom"),
        (register(idempotency_key=""), "idempotencyKey"),
        (append(""), "content"),
        (append(agent=""), "agent"),
        (request(""), "targetAgent"),
        (accept(""), "handoffId"),
        (accept("h", ""), "agent"),
        (close(""), "agent"),
        (append(expected_version=-1), "expectedVersion"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_an_empty_or_negative_value_is_an_invalid_argument_not_a_limit(command, field):
    assert _raises(command, InvalidArgument).details["field"] == field


def test_limits_are_configurable():
    small = Limits(content_max_bytes=10, key_max=3, token_budget_min=1)
    _raises(append("c" * 11), LimitExceeded, small)
    _raises(append(key="abcd"), LimitExceeded, small)
    check_limits(request(token_budget=1), small)


def test_limits_are_checked_before_the_rules_so_an_over_limit_command_on_a_missing_session_is_limit_exceeded():
    with pytest.raises(LimitExceeded):
        execute(None, append("c" * (1024 * 1024 + 1)), ctx())


def test_an_over_limit_command_writes_nothing():
    history = given(register())
    before = state_of(history)
    with pytest.raises(LimitExceeded):
        execute(before, append(metadata=BIG_OBJECT), ctx())
    assert state_of(history) == before


def test_limit_exceeded_is_a_kind_of_invalid_argument_with_its_own_code():
    error = _raises(request(token_budget=1), LimitExceeded)
    assert isinstance(error, InvalidArgument)
    assert error.code == "LIMIT_EXCEEDED"


# -- shapes checked by typed decoding at the boundary ------------------------------------------------

_decode = msgspec.json.Decoder(Command)


@pytest.mark.parametrize(
    "record",
    [
        b'{"command":"RegisterSession","sessionKey":"has space","agentFrom":"a"}',
        b'{"command":"RegisterSession","sessionKey":"s","agentFrom":"bad\\u0007agent"}',
        b'{"command":"RegisterSession","sessionKey":"s","agentFrom":"a","agnetFrom":"typo"}',
        b'{"command":"AppendContext","sessionKey":"s","contextType":"poem","content":"x"}',
        b'{"command":"RequestHandoff","sessionKey":"s","targetAgent":"b","requestType":"takeover"}',
        b'{"command":"RequestHandoff","sessionKey":"s","targetAgent":"b","tokenBudget":"many"}',
        b'{"command":"AppendContext","sessionKey":"s","contextType":"message","content":"x","metadata":[1]}',
        b'{"command":"LaunchRockets","sessionKey":"s"}',
    ],
    ids=[
        "key-alphabet",
        "agent-control-char",
        "unknown-field",
        "context-type",
        "request-type",
        "budget-type",
        "metadata-not-object",
        "unknown-command",
    ],
)
def test_a_malformed_command_record_fails_typed_decoding(record):
    with pytest.raises(msgspec.ValidationError):
        _decode.decode(record)


@pytest.mark.parametrize(
    "command",
    [
        register(metadata={"n": 2**64}),
        append(metadata={"deep": [{"n": -(2**63) - 1}]}),
        request(request_data={"n": 10**30}),
        complete("h", result={"n": 2**70}),
    ],
    ids=lambda c: type(c).__name__,
)
def test_an_integer_outside_64_bits_in_a_json_object_is_an_invalid_argument(command):
    # JSON allows it, but the views and the decision state are msgpack: it would fail the whole write batch.
    _raises(command, InvalidArgument)


def test_the_extreme_64_bit_integers_are_accepted_in_a_json_object():
    check_limits(append(metadata={"lo": -(2**63), "hi": 2**64 - 1}), LIMITS)
