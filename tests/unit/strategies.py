"""Hypothesis strategies for the kernel: random command sequences over a few sessions and agents.

A strategy draws abstract operations; `Model.command` turns one into a concrete command against the
current state, so handoff commands name handoffs that exist (or, sometimes, one that does not).
Many drawn commands break a rule (wrong agent, finished handoff, closed session, stale version,
empty content, budget out of range): they must be refused and change nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    AppendContextBatch,
    CancelHandoff,
    CloseSession,
    Command,
    CompleteHandoff,
    ContextItem,
    ExpireHandoff,
    ExpireSession,
    RegisterSession,
    RejectHandoff,
    RequestHandoff,
)
from handoff.kernel.decide import Ctx, execute_all
from handoff.kernel.errors import HandoffError
from handoff.kernel.events import Envelope
from handoff.kernel.package import build_package
from handoff.kernel.state import SessionState
from handoff.kernel.types import CONTEXT_TYPES, DEFAULT_TOKEN_BUDGET, REQUEST_TYPES
from handoff.storage.kv import InMemoryKeyValue
from projections.queries import Queries
from projections.replay import fold_events
from projections.summary import package_head
from projections.viewstore import StoreReader

SESSIONS = ("s1", "s2", "s3")  # registered first by every program
UNREGISTERED = "s4"  # seldom drawn: SESSION_NOT_FOUND
AGENTS = ("alice", "bob", "carol")
IDEMPOTENCY_KEYS = ("k1", "k2")

sessions = st.sampled_from([*SESSIONS * 3, UNREGISTERED])
agents = st.sampled_from(AGENTS)
# A few metadata objects rather than arbitrary JSON (that has its own codec property): task ids and statuses
# for the summary, unsorted keys for canonical encoding, big and fractional numbers, nesting and unicode.
METADATA = (
    None,
    {"taskId": "T1"},
    {"taskId": "T2", "status": "open"},
    {"status": "done", "taskId": "T1"},
    {"taskId": "T2", "status": "Completed"},
    {"z": 1, "a": [1.5, None, True], "m": {"y": "é", "b": -(2**63)}},
    {"n": 2**64 - 1, "f": -0.25},
    {"n": 2**64},  # beyond msgpack's 64-bit integers: INVALID_ARGUMENT
)
# one in ten is empty: INVALID_ARGUMENT
contents = st.sampled_from(["", "hello", "a decision ✓", "x" * 300, "  spaced\n\ttext  "]) | st.text(
    min_size=1, max_size=20
)
# Weights: sessions must live long enough for handoffs to be requested, accepted and completed.
_WEIGHTS = {
    "register": 1,
    "append": 6,
    "batch": 2,  # analyze_codebase's AppendContextBatch: two entries in one command
    "request": 4,
    "accept": 4,
    "complete": 3,
    "reject": 1,
    "cancel": 1,
    "expire_handoff": 1,
    "close": 1,
    "expire_session": 1,
}
_KINDS = [kind for kind, weight in _WEIGHTS.items() for _ in range(weight)]


def _pick(choices: tuple[Any, ...] | list[Any], n: int) -> tuple[Any, int]:
    n, i = divmod(n, len(choices))
    return choices[i], n


def _operation(kind: str, session: str, content: str, n: int) -> dict[str, Any]:
    """An operation whose many small choices all derive from one drawn integer (cheap to draw and shrink)."""
    op: dict[str, Any] = {"kind": kind, "session": session, "content": content}
    for name, choices in _CHOICES.items():
        op[name], n = _pick(choices, n)
    return op


_CHOICES: dict[str, tuple[Any, ...]] = {
    "expected": (None,) * 12 + ("current",) * 3 + (0, 3),  # 0, 3: mostly stale
    "ikey": (None,) * 6 + IDEMPOTENCY_KEYS,
    "agent": (None, None, *AGENTS),  # None: the agent the rule allows (target, acceptor, requester)
    "any_agent": AGENTS,
    "type": CONTEXT_TYPES,
    "request_type": REQUEST_TYPES,
    "metadata": METADATA,
    "budget": (None, None, 50, 100, 300, 1000, 200_001),  # 50 and 200 001: LIMIT_EXCEEDED
    # 0: the newest handoff of any session (and that session), 1: the newest of the drawn session,
    # 2: the one before it …; past the end: an unknown handoff
    "pick": (0, 0, 0, 1, 1, 2, 3),
}

operations = st.builds(_operation, st.sampled_from(_KINDS), sessions, contents, st.integers(0, 2**40))


def _registration(key: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "kind": st.just("register"),
            "session": st.just(key),
            "expected": st.none(),
            "ikey": st.none(),
            "any_agent": agents,
            "metadata": st.sampled_from(METADATA[:-1]),
        }
    )


# Every program registers its sessions first, so that most of what follows is decided on a live session.
programs = st.builds(
    lambda first, rest: [*first, *rest],
    st.tuples(*map(_registration, SESSIONS)),
    st.lists(operations, min_size=10, max_size=40),
)


def _newest_handoff_session(state_of: Callable[[str], SessionState | None]) -> str | None:
    newest: tuple[str, str] | None = None
    for key in SESSIONS:
        state = state_of(key)
        for handoff in state.handoffs.values() if state is not None else ():
            if newest is None or handoff.requested_at >= newest[0]:
                newest = (handoff.requested_at, key)
    return None if newest is None else newest[1]


def to_command(op: dict[str, Any], state_of: Callable[[str], SessionState | None]) -> Command:
    """The concrete command an abstract operation stands for, given the sessions' current states."""
    kind = op["kind"]
    handoff_command = kind in ("accept", "complete", "reject", "cancel", "expire_handoff")
    key = op["session"]
    if handoff_command and op["pick"] == 0:
        key = _newest_handoff_session(state_of) or key
    state = state_of(key)
    expected = op["expected"]
    if expected == "current":
        expected = state.version if state is not None else 0
    common: dict[str, Any] = {"session_key": key, "expected_version": expected, "idempotency_key": op["ikey"]}
    agent = op.get("agent")
    if handoff_command:
        ids = list(state.handoffs) if state is not None else []
        back = max(0, op["pick"] - 1)
        hid = ids[-1 - back] if back < len(ids) else "unknown-handoff"
        common["handoff_id"] = hid
        if agent is None and state is not None and hid in state.handoffs:
            handoff = state.handoffs[hid]
            agent = {"cancel": handoff.source_agent, "complete": handoff.accepted_by}.get(kind, handoff.target_agent)
        agent = agent or "alice"
    return _BUILDERS[kind](op, agent, common)


_BUILDERS: dict[str, Callable[[dict[str, Any], Any, dict[str, Any]], Command]] = {
    "register": lambda op, _, c: RegisterSession(agent_from=op["any_agent"], metadata=op["metadata"], **c),
    "append": lambda op, agent, c: AppendContext(
        context_type=op["type"], content=op["content"], metadata=op["metadata"], agent=agent, **c
    ),
    "batch": lambda op, agent, c: AppendContextBatch(
        entries=[
            ContextItem(context_type="file", content=op["content"], metadata=op["metadata"]),
            ContextItem(context_type=op["type"], content="the second entry"),
        ],
        agent=agent,
        **c,
    ),
    "request": lambda op, _, c: RequestHandoff(
        target_agent=op["any_agent"], request_type=op["request_type"], token_budget=op["budget"], **c
    ),
    "accept": lambda op, agent, c: AcceptHandoff(agent=agent, **c),
    "complete": lambda op, agent, c: CompleteHandoff(agent=agent, result={"done": True}, **c),
    "reject": lambda op, agent, c: RejectHandoff(agent=agent, reason="busy", **c),
    "cancel": lambda op, agent, c: CancelHandoff(agent=agent, **c),
    "expire_handoff": lambda op, _, c: ExpireHandoff(**c),
    "close": lambda op, _, c: CloseSession(agent=op["any_agent"], **c),
    "expire_session": lambda op, _, c: ExpireSession(**c),
}


class Clock:
    """A deterministic clock: one millisecond later at every call."""

    def __init__(self) -> None:
        self.ticks = itertools.count()

    def __call__(self) -> str:
        ms = next(self.ticks)
        return f"2026-11-27T10:{ms // 60000:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}Z"


def new_ids(prefix: str = "id") -> Any:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers):06d}"


@dataclass
class Model:
    """The pure write path as a shell would drive it: packages from the views, then `execute`."""

    states: dict[str, SessionState] = field(default_factory=dict)
    log: list[Envelope] = field(default_factory=list)
    refused: list[tuple[Command, HandoffError]] = field(default_factory=list)
    kv: InMemoryKeyValue = field(default_factory=InMemoryKeyValue)
    clock: Clock = field(default_factory=Clock)
    new_id: Any = field(default_factory=new_ids)
    accepted: int = 0  # commands accepted (a batch appends several events to `log`)

    def run(self, op: dict[str, Any]) -> Envelope | None:
        """Decide one operation; the envelope if it was accepted, else None (and nothing changed)."""
        command = to_command(op, self.states.get)
        state = self.states.get(command.session_key)
        package = None
        if isinstance(command, RequestHandoff) and state is not None and state.status == "active":
            package = self.package(command.session_key, state, command.token_budget or DEFAULT_TOKEN_BUDGET)
        ctx = Ctx(now=self.clock(), new_id=self.new_id, package=package)
        try:
            new_state, sealed = execute_all(state, command, ctx)
        except HandoffError as exc:
            self.refused.append((command, exc))
            assert self.states.get(command.session_key) is state
            return None
        self.states[command.session_key] = new_state
        envelopes = [env for env, _ in sealed]
        self.log.extend(envelopes)
        self.accepted += 1
        fold_events(self.kv, envelopes)
        return envelopes[-1]

    def package(self, key: str, state: SessionState, budget: int) -> Any:
        summary = StoreReader(self.kv).summary(key)
        assert summary is not None
        record, _ = build_package(
            package_head(summary), Queries(self.kv).entries_newest_first(key, state.last_sequence), budget
        )
        return record


def run_program(program: list[dict[str, Any]]) -> Model:
    """A model after running every operation of a program."""
    model = Model()
    for op in program:
        model.run(op)
    return model
