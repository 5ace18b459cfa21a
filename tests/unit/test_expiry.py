"""Expiry and dormancy (CONTRACT §8) on the embedded engine with a clock the tests move by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from handoff.engine.engine import Engine
from handoff.kernel.codec import decode_envelope
from handoff.kernel.commands import RegisterSessionArgs, RequestHandoffArgs
from handoff.kernel.events import HandoffExpired, SessionExpired
from handoff.kernel.lifecycle import due_commands
from handoff.kernel.state import evolve
from handoff.kernel.times import format_time
from handoff.storage import due
from handoff.storage.kv import InMemoryKeyValue
from projections.lifecycle import with_lifecycle
from projections.queries import Queries
from projections.replay import fold_events
from projections.tallies import tally

from .strategies import new_ids
from .support import accept, append, close, register, request

HOUR = 3600
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class ManualClock:
    """The engine's clock, moved only by the test."""

    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> str:
        return format_time(self.at)

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def _engine(kv: InMemoryKeyValue | None = None, clock: ManualClock | None = None) -> tuple[Engine, ManualClock]:
    clock = clock or ManualClock()
    return Engine(kv or InMemoryKeyValue(), clock=clock, new_id=new_ids(), sync=False), clock


def _running(test: Callable[[Engine, ManualClock], Awaitable[None]], engine: Engine, clock: ManualClock) -> None:
    async def main() -> None:
        await engine.start()
        try:
            await test(engine, clock)
        finally:
            await engine.stop()

    asyncio.run(main())


def _events(engine: Engine, kind: type[Any]) -> list[Any]:
    return [env for key in engine.log.session_keys() for env in engine.log.stream(key) if isinstance(env.event, kind)]


def _due_index(engine: Engine) -> list[bytes]:
    return [k for k, _ in engine.kv.scan(due.PREFIX)]


def test_a_session_with_no_writes_for_its_ttl_expires_exactly_once_by_the_system() -> None:
    engine, clock = _engine()
    engine.write_now([register()])

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(24 * HOUR - 0.001)
        await engine.sweeper.sweep()
        assert engine.state("s1").status == "active"
        clock.advance(0.001)
        await engine.sweeper.sweep()
        await engine.sweeper.sweep()
        clock.advance(48 * HOUR)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    (expired,) = _events(engine, SessionExpired)
    assert expired.actor == "system" and expired.occurred_at == "2026-12-02T09:00:00.000Z"
    assert engine.session_view("s1").status == "expired"
    assert _due_index(engine) == []  # nothing left to sweep for a session that is no longer active


def test_a_write_just_before_the_ttl_moves_expiry_to_a_full_ttl_after_it() -> None:
    engine, clock = _engine()
    engine.write_now([register()])

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(24 * HOUR - 1)
        await engine.submit(append("still here"))
        clock.advance(1)
        await engine.sweeper.sweep()
        assert engine.state("s1").status == "active"
        view = with_lifecycle(engine.session_view("s1"), clock())
        assert view.last_activity_at == "2026-12-02T08:59:59.000Z"
        assert view.expires_at == "2026-12-03T08:59:59.000Z"
        clock.advance(24 * HOUR - 1)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    assert len(_events(engine, SessionExpired)) == 1
    assert engine.state("s1").version == 3


@pytest.mark.parametrize(("policy", "ttl_hours"), [("short", 4), ("standard", 24), ("extended", 72)])
def test_each_retention_policy_has_its_active_ttl(policy: str, ttl_hours: int) -> None:
    engine, clock = _engine()
    engine.write_now([register(retention_policy=policy)])

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(ttl_hours * HOUR - 1)
        await engine.sweeper.sweep()
        assert engine.state("s1").status == "active"
        clock.advance(1)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    assert engine.state("s1").status == "expired"
    assert engine.session_view("s1").retention_policy == policy


def test_a_pending_handoff_past_accept_within_expires_and_leaves_the_inbox() -> None:
    engine, clock = _engine()
    results = engine.write_now([register(), append(), request("bob", accept_within=HOUR), request("carol")])
    quick, slow = (r.envelope.event.handoff_id for r in results[2:])

    def inbox(agent: str) -> list[str]:
        return [h.handoff_id for h in engine.queries.list_handoffs(agent, None, "pending", 100, None).items]

    assert inbox("bob") == [quick]

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(HOUR - 1)
        await engine.sweeper.sweep()
        assert engine.handoff_view(quick).status == "pending"
        clock.advance(1)
        await engine.sweeper.sweep()
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    (expired,) = _events(engine, HandoffExpired)
    assert expired.event.handoff_id == quick and expired.actor == "system"
    assert engine.handoff_view(quick).status == "expired" and inbox("bob") == []
    assert engine.handoff_view(slow).status == "pending" and inbox("carol") == [slow]
    assert engine.state("s1").status == "active"  # a handoff's expiry leaves its session as it was


def test_a_handoff_expires_by_default_a_day_after_it_was_requested() -> None:
    engine, clock = _engine()
    _, hid = _request_of(engine)

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(12 * HOUR)
        await engine.submit(append("the session stays active"))
        clock.advance(12 * HOUR)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    assert engine.handoff_view(hid).status == "expired"
    assert engine.state("s1").status == "active"


def test_an_accepted_handoff_does_not_expire_at_its_deadline() -> None:
    engine, clock = _engine()
    (_, hid) = _request_of(engine, accept_within=HOUR)
    engine.write_now([accept(hid)])

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(2 * HOUR)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    assert engine.handoff_view(hid).status == "accepted"
    assert _events(engine, HandoffExpired) == []


def _request_of(engine: Engine, **kw: Any) -> tuple[str, str]:
    results = engine.write_now([register(), append(), request("bob", **kw)])
    return "s1", results[2].envelope.event.handoff_id


def test_a_session_expiring_takes_its_pending_handoffs_with_it() -> None:
    engine, clock = _engine()
    engine.write_now([register(retention_policy="short")])
    hid = engine.write_now([request("bob", accept_within=10 * HOUR)])[0].envelope.event.handoff_id

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(4 * HOUR)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    (expired,) = _events(engine, SessionExpired)
    assert expired.event.cancelled_handoffs == [hid]
    assert engine.handoff_view(hid).status == "expired"


def test_closed_sessions_never_expire_and_leave_the_index() -> None:
    engine, clock = _engine()
    engine.write_now([register(), close()])

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(30 * 24 * HOUR)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    assert _events(engine, SessionExpired) == [] and engine.state("s1").status == "closed"
    assert _due_index(engine) == []


def test_an_entry_swept_again_after_a_crash_expires_nothing_twice() -> None:
    """A sweep that died after its expiry but before it rewrote the index finds the session expired."""
    engine, clock = _engine()
    engine.write_now([register()])
    (stale,) = _due_index(engine)

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(24 * HOUR)
        await engine.sweeper.sweep()
        engine.kv.write([(stale, b"")])  # the entry as the crashed sweep left it
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    assert len(_events(engine, SessionExpired)) == 1
    assert _due_index(engine) == []


def test_an_expiry_judged_before_a_write_is_refused_by_the_version_it_carries() -> None:
    engine, clock = _engine()
    engine.write_now([register()])
    clock.advance(24 * HOUR)
    (command,) = due_commands(engine.state("s1"), clock())
    engine.write_now([append("raced in first")])
    (result,) = engine.write_now([command])
    assert result.code == "VERSION_CONFLICT"
    assert engine.state("s1").status == "active"


def test_many_due_sessions_are_swept_page_by_page_each_once() -> None:
    engine, clock = _engine()
    engine.write_now([register(key=f"s{i}", retention_policy="short") for i in range(250)])
    engine.sweeper.page = 100

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(4 * HOUR)
        taken = [await engine.sweeper.sweep() for _ in range(4)]
        assert taken == [100, 100, 50, 0]

    _running(test, engine, clock)
    expired = _events(engine, SessionExpired)
    assert sorted(env.session_key for env in expired) == sorted(f"s{i}" for i in range(250))
    assert engine.sweeper.expired == 250


def test_replay_of_the_log_reproduces_every_expiry() -> None:
    engine, clock = _engine()
    results = engine.write_now(
        [register(key="a", retention_policy="short"), register(key="b"), request("bob", key="b", accept_within=HOUR)]
    )
    hid = results[2].envelope.event.handoff_id

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(4 * HOUR)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    assert len(_events(engine, SessionExpired)) == 1 and len(_events(engine, HandoffExpired)) == 1
    replayed = InMemoryKeyValue()
    fold_events(replayed, (env for key in ("a", "b") for env in engine.log.stream(key)))
    again = Queries(replayed)
    for key in ("a", "b"):
        assert again.session(key) == engine.queries.session(key)
        state = None
        for env in engine.log.stream(key):
            state = evolve(state, env)
        assert state == engine.state(key)
    assert again.handoff(hid) == engine.queries.handoff(hid)
    assert again.session("a").status == "expired" and again.handoff(hid).status == "expired"


def test_a_store_written_before_the_due_index_is_seeded_once_and_then_swept() -> None:
    engine, clock = _engine()
    engine.write_now([register(key="old"), register(key="new")])
    engine.kv.write([(k, None) for k in _due_index(engine)])  # as a store from before expiry existed
    assert due.seed(engine.kv) == 2 and due.seed(engine.kv) == 0

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(24 * HOUR)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    assert {env.session_key for env in _events(engine, SessionExpired)} == {"old", "new"}


def test_appends_add_no_due_index_key() -> None:
    engine, _ = _engine()
    engine.write_now([register()])
    before = _due_index(engine)
    engine.write_now([append(str(i)) for i in range(10)])
    assert _due_index(engine) == before


@pytest.mark.parametrize(
    ("policy", "idle_hours", "dormant"),
    [
        ("standard", 1.99, False),
        ("standard", 2, True),
        ("short", 1, True),
        ("extended", 5.9, False),
        ("extended", 6, True),
    ],
)
def test_dormancy_is_a_read_time_flag_after_the_idle_period(policy: str, idle_hours: float, dormant: bool) -> None:
    engine, clock = _engine()
    engine.write_now([register(retention_policy=policy)])
    clock.advance(idle_hours * HOUR)
    view = with_lifecycle(engine.session_view("s1"), clock())
    assert view.dormant is dormant
    assert engine.session_view("s1").dormant is False  # the stored view is never changed by a read
    assert len(list(engine.log.stream("s1"))) == 1  # and no event records it


def test_a_closed_session_is_neither_dormant_nor_expiring() -> None:
    engine, clock = _engine()
    engine.write_now([register(), close()])
    clock.advance(10 * HOUR)
    view = with_lifecycle(engine.session_view("s1"), clock())
    assert view.dormant is False and view.expires_at is None and view.last_activity_at is not None


def test_the_tool_arguments_take_a_retention_policy_and_accept_within() -> None:
    args = msgspec.json.decode(
        b'{"sessionKey": "k", "agentFrom": "a", "retentionPolicy": "short"}', type=RegisterSessionArgs
    )
    assert args.retention_policy == "short"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"sessionKey": "k", "retentionPolicy": "forever"}', type=RegisterSessionArgs)
    args2 = msgspec.json.decode(b'{"sessionKey": "k", "targetAgent": "b", "acceptWithin": 60}', type=RequestHandoffArgs)
    assert args2.accept_within == 60
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"sessionKey": "k", "targetAgent": "b", "acceptWithin": 0}', type=RequestHandoffArgs)


def test_the_metrics_fold_counts_what_the_sweeper_expired() -> None:
    engine, clock = _engine()
    engine.write_now([register(key="a", retention_policy="short"), register(key="b")])
    results = engine.write_now([request("carol", key="a"), request("bob", key="b", accept_within=HOUR)])
    handoff_ids = [r.envelope.event.handoff_id for r in results]

    async def test(engine: Engine, clock: ManualClock) -> None:
        clock.advance(4 * HOUR)
        await engine.sweeper.sweep()

    _running(test, engine, clock)
    envelopes = [decode_envelope(record) for *_, record in engine.log.global_records()]
    counts = tally(envelopes, {hid: engine.handoff_view(hid) for hid in handoff_ids})
    assert counts.sessions["expired"] == 1  # a; b was written within its day
    assert counts.handoffs[("context_transfer", "expired")] == 2  # carol's with a, bob's past its hour
    assert counts.pending == 0
