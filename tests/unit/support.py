"""Given-events / when-command / then-events helpers for the kernel tests.

`given(*commands)` runs commands through the pure write path (`execute`) and returns the sealed
envelopes; `when(history, command)` returns the events the command adds to that history;
`refused(history, command, Error)` asserts the command is refused with that error.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import msgspec
import pytest

from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    CancelHandoff,
    CloseSession,
    Command,
    CompleteHandoff,
    ExpireHandoff,
    ExpireSession,
    RegisterSession,
    RejectHandoff,
    RequestHandoff,
)
from handoff.kernel.decide import Ctx, execute
from handoff.kernel.errors import HandoffError
from handoff.kernel.events import Envelope, Event, HandoffRequested, PackageRecord
from handoff.kernel.state import SessionState, evolve
from handoff.kernel.types import Limits

KEY = "s1"
NOW = "2026-11-27T10:00:00.000Z"
LATER = "2026-11-27T10:05:00.000Z"

PACKAGE = PackageRecord(
    from_sequence=1,
    to_sequence=2,
    entry_count=2,
    token_budget=4000,
    estimated_tokens=40,
    sha256="ab" * 32,
    summary="Session s1: 2 context entries",
    key_points=["Last message: hello"],
    participants=["alice"],
)


def counter(prefix: str) -> Callable[[], str]:
    """A deterministic id generator: ``prefix-0001``, ``prefix-0002`` …"""
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers):04d}"


def ctx(
    *, now: str = NOW, package: PackageRecord | None = PACKAGE, limits: Limits | None = None, prefix: str = "w"
) -> Ctx:
    """A context with a fixed clock and counting ids."""
    return Ctx(now=now, new_id=counter(prefix), limits=limits or Limits(), package=package)


H1, H2, H3 = "$1", "$2", "$3"  # placeholders for the 1st, 2nd, 3rd handoff requested in the history


def resolve(history: list[Envelope], command: Command) -> Command:
    """The command with a ``$n`` handoff id placeholder replaced by the n-th requested handoff's id."""
    hid = getattr(command, "handoff_id", None)
    if hid is None or not hid.startswith("$"):
        return command
    ids = handoff_ids(history)
    return msgspec.structs.replace(command, handoff_id=ids[int(hid[1:]) - 1])  # type: ignore[type-var]


def state_of(history: list[Envelope]) -> SessionState | None:
    """The decision state folded from a history."""
    state: SessionState | None = None
    for env in history:
        state = evolve(state, env)
    return state


def given(*commands: Command, now: str = NOW, prefix: str = "g", after: list[Envelope] = ()) -> list[Envelope]:  # type: ignore[assignment]
    """The history `after` plus what the commands write, each accepted in turn (``$n`` handoff ids resolved).

    Give histories written by separate calls distinct `prefix`es: ids must stay unique.
    """
    ids = counter(prefix)
    history: list[Envelope] = list(after)
    states: dict[str, SessionState] = {}
    for env in history:
        states[env.session_key] = evolve(states.get(env.session_key), env)
    for command in commands:
        command = resolve(history, command)
        state, env = execute(states.get(command.session_key), command, Ctx(now=now, new_id=ids, package=PACKAGE))
        states[command.session_key] = state
        history.append(env)
    return history


def when(history: list[Envelope], command: Command, **options: object) -> list[Event]:
    """The events the command appends to the history."""
    return [when_sealed(history, command, **options).event]


def when_sealed(history: list[Envelope], command: Command, **options: object) -> Envelope:
    """The sealed envelope the command appends to the history."""
    return execute(state_of(history), resolve(history, command), ctx(**options))[1]  # type: ignore[arg-type]


def refused(history: list[Envelope], command: Command, error: type[HandoffError], **options: object) -> HandoffError:
    """Assert the command is refused with `error`, and return the error for further checks."""
    with pytest.raises(error) as caught:
        execute(state_of(history), resolve(history, command), ctx(**options))  # type: ignore[arg-type]
    assert type(caught.value) is error
    return caught.value


def handoff_ids(history: list[Envelope]) -> list[str]:
    """The ids of the handoffs requested in a history, oldest first."""
    return [env.event.handoff_id for env in history if isinstance(env.event, HandoffRequested)]


# -- command builders with sensible defaults ---------------------------------------------------------


def register(agent: str = "alice", key: str = KEY, **kw: object) -> RegisterSession:
    return RegisterSession(session_key=key, agent_from=agent, **kw)  # type: ignore[arg-type]


def append(content: str = "hello", context_type: str = "message", key: str = KEY, **kw: object) -> AppendContext:
    return AppendContext(session_key=key, context_type=context_type, content=content, **kw)  # type: ignore[arg-type]


def request(
    target: str = "bob", request_type: str = "context_transfer", key: str = KEY, **kw: object
) -> RequestHandoff:
    return RequestHandoff(session_key=key, target_agent=target, request_type=request_type, **kw)  # type: ignore[arg-type]


def accept(hid: str, agent: str = "bob", key: str = KEY, **kw: object) -> AcceptHandoff:
    return AcceptHandoff(session_key=key, handoff_id=hid, agent=agent, **kw)  # type: ignore[arg-type]


def complete(hid: str, agent: str = "bob", key: str = KEY, **kw: object) -> CompleteHandoff:
    return CompleteHandoff(session_key=key, handoff_id=hid, agent=agent, **kw)  # type: ignore[arg-type]


def reject(hid: str, agent: str = "bob", reason: str = "busy", key: str = KEY, **kw: object) -> RejectHandoff:
    return RejectHandoff(session_key=key, handoff_id=hid, agent=agent, reason=reason, **kw)  # type: ignore[arg-type]


def cancel(hid: str, agent: str = "alice", key: str = KEY, **kw: object) -> CancelHandoff:
    return CancelHandoff(session_key=key, handoff_id=hid, agent=agent, **kw)  # type: ignore[arg-type]


def close(agent: str = "alice", key: str = KEY, **kw: object) -> CloseSession:
    return CloseSession(session_key=key, agent=agent, **kw)  # type: ignore[arg-type]


def expire_handoff(hid: str, key: str = KEY, **kw: object) -> ExpireHandoff:
    return ExpireHandoff(session_key=key, handoff_id=hid, **kw)  # type: ignore[arg-type]


def expire_session(key: str = KEY, **kw: object) -> ExpireSession:
    return ExpireSession(session_key=key, **kw)  # type: ignore[arg-type]


def requested(target: str = "bob", request_type: str = "context_transfer") -> list[Envelope]:
    """A session alice registered, with one message, and one handoff requested of `target`."""
    return given(register(), append(), request(target, request_type))
