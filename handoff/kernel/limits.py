"""Size and range limits (LIMIT_EXCEEDED), checked before any rule so over-limit input writes nothing."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from handoff.kernel.commands import (
    AcceptHandoffArgs,
    AppendContextBatch,
    CancelHandoffArgs,
    CloseSessionArgs,
    CompleteHandoffArgs,
    ExpireHandoff,
    RegisterSessionArgs,
    RejectHandoffArgs,
    RequestHandoffArgs,
    UpdateContextArgs,
    WriteArgs,
)
from handoff.kernel.errors import InvalidArgument, LimitExceeded
from handoff.kernel.text import agent_name_problem
from handoff.kernel.types import Limits


def _length(name: str, value: str | None, low: int, high: int) -> None:
    if value is None:
        return
    if len(value) < low:
        raise InvalidArgument(f"{name} must not be empty", field=name)
    if len(value) > high:
        raise LimitExceeded(f"{name} is {len(value)} characters; the limit is {high}", field=name, limit=high)


def _agent(name: str, value: str | None, limits: Limits) -> None:
    _length(name, value, 1, limits.agent_max)
    if value is not None and not (value.isascii() and value.isprintable()):
        problem = agent_name_problem(value)
        if problem is not None:
            raise InvalidArgument(f"{name}: {problem}", field=name)


def _non_finite(value: object) -> bool:
    """Whether a JSON value holds NaN or an infinity (JSON has neither; encoders would write null)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _object(name: str, value: dict[str, Any] | None, limits: Limits) -> None:
    if not value:  # None or {}: nothing to measure (the common case)
        return
    if _non_finite(value):
        raise InvalidArgument(f"{name} holds NaN or an infinity, which JSON cannot carry", field=name)
    size = len(msgspec.json.encode(value))
    if size > limits.object_max_bytes:
        raise LimitExceeded(
            f"{name} is {size} bytes of JSON; the limit is {limits.object_max_bytes}",
            field=name,
            limit=limits.object_max_bytes,
        )
    try:  # the views and the decision state are msgpack, whose integers are 64-bit
        _msgpack.encode(value)
    except OverflowError as exc:
        raise InvalidArgument(f"{name} holds an integer outside the 64-bit range", field=name) from exc


_msgpack = msgspec.msgpack.Encoder()


def _content(name: str, content: str, limits: Limits) -> int:
    """The UTF-8 size of a context entry's content; InvalidArgument if empty, LimitExceeded if too long."""
    if not content:
        raise InvalidArgument(f"{name} must not be empty", field=name)
    # A character is at most 4 bytes of UTF-8: only long content needs encoding to measure.
    size = len(content) if len(content) * 4 <= limits.content_max_bytes else len(content.encode())
    if size > limits.content_max_bytes:
        raise LimitExceeded(
            f"{name} is {size} bytes of UTF-8; the limit is {limits.content_max_bytes}",
            field=name,
            limit=limits.content_max_bytes,
        )
    return size


def _batch(command: AppendContextBatch, limits: Limits) -> None:
    """Each entry within the limits of one `update_context`, and the batch within its count and size."""
    count, most = len(command.entries), limits.batch_entries_max
    if count == 0:
        raise InvalidArgument("a batch must append at least one entry", field="entries")
    if count > most:
        raise LimitExceeded(f"{count} entries in one batch; the limit is {most}", field="entries", limit=most)
    total = 0
    for i, entry in enumerate(command.entries):
        total += _content(f"entries[{i}].content", entry.content, limits)
        _object(f"entries[{i}].metadata", entry.metadata, limits)
        total += len(msgspec.json.encode(entry.metadata)) if entry.metadata else 0
    if total > limits.batch_bytes_max:
        raise LimitExceeded(
            f"the batch's entries are {total} bytes together; the limit is {limits.batch_bytes_max}",
            field="entries",
            limit=limits.batch_bytes_max,
        )


def check_limits(command: WriteArgs, limits: Limits) -> None:  # noqa: C901 - one case per type: a total match
    """Raise LimitExceeded (or InvalidArgument for empty values) if the command breaks a limit.

    It also takes a handoff tool's arguments, checked before their session is looked up (they name none).
    """
    _length("sessionKey", getattr(command, "session_key", None), 1, limits.key_max)
    _length("idempotencyKey", command.idempotency_key, 1, limits.idempotency_key_max)
    if command.expected_version is not None and command.expected_version < 0:
        raise InvalidArgument("expectedVersion must be 0 or more", field="expectedVersion")
    if isinstance(command, UpdateContextArgs):  # the hot path (AppendContext) first, before the match
        _agent("agent", command.agent, limits)
        _object("metadata", command.metadata, limits)
        _content("content", command.content, limits)
        return
    match command:
        case RegisterSessionArgs():
            _agent("agentFrom", command.agent_from, limits)
            _object("metadata", command.metadata, limits)
        case AppendContextBatch():
            _agent("agent", command.agent, limits)
            _batch(command, limits)
        case RequestHandoffArgs():
            _agent("targetAgent", command.target_agent, limits)
            _agent("agent", command.agent, limits)
            _object("requestData", command.request_data, limits)
            budget = command.token_budget
            if budget is not None and not limits.token_budget_min <= budget <= limits.token_budget_max:
                raise LimitExceeded(
                    f"tokenBudget {budget} is outside {limits.token_budget_min}..{limits.token_budget_max}",
                    field="tokenBudget",
                )
        case AcceptHandoffArgs() | RejectHandoffArgs() | CancelHandoffArgs() | CompleteHandoffArgs() | ExpireHandoff():
            _length("handoffId", command.handoff_id, 1, limits.key_max)
            if not isinstance(command, ExpireHandoff):
                _agent("agent", command.agent, limits)
            if isinstance(command, CompleteHandoffArgs):
                _object("result", command.result, limits)
        case CloseSessionArgs():
            _agent("agent", command.agent, limits)
        case _:
            pass
