"""Expiry in Kafka mode (CONTRACT §8): the owner of a partition sweeps it; after a failover the new owner does.

The workers run in this process with a clock the test moves, so "24 hours later" takes no time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from handoff.kernel.codec import decode_envelope
from handoff.kernel.commands import AppendContext, RegisterSession, RequestHandoff
from handoff.kernel.events import HandoffExpired, HandoffRequested, SessionExpired
from handoff.kernel.times import format_time
from kafka.support import REPO, Broker, read_topic, running_service, running_worker, wait_until
from streams.client import KafkaService
from streams.topics import Topics

pytestmark = pytest.mark.anyio

HOUR = 3600


class ManualClock:
    """The workers' clock, moved only by the test."""

    def __init__(self) -> None:
        self.at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> str:
        return format_time(self.at)

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


async def _expiries(broker: Broker, topics: Topics) -> Counter[tuple[str, str]]:
    seen: Counter[tuple[str, str]] = Counter()
    for rec in await read_topic(broker.bootstrap, topics.events, topics.partitions):
        env = decode_envelope(rec.value)
        if isinstance(env.event, SessionExpired):
            seen[("session", env.session_key)] += 1
        elif isinstance(env.event, HandoffExpired):
            seen[("handoff", env.event.handoff_id)] += 1
    return seen


async def _all_expired(svc: KafkaService, keys: list[str]) -> bool:
    for key in keys:
        view = await svc.session(key)
        if view is None or view.status != "expired":
            return False
    return True


async def test_the_owner_expires_each_due_session_and_handoff_once(broker: Broker, tmp_path: Path) -> None:
    topics = Topics(f"t{uuid.uuid4().hex[:8]}", 4)
    clock = ManualClock()
    async with (
        running_worker(broker.bootstrap, topics, tmp_path / "w", clock=clock, sweep_every=0.1) as worker,
        running_service(broker.bootstrap, topics) as svc,
    ):
        keys = [f"short-{i}" for i in range(12)]
        for key in keys:
            await svc.submit(RegisterSession(session_key=key, agent_from="a", retention_policy="short"))
        await svc.submit(RegisterSession(session_key="kept", agent_from="a"))
        await svc.submit(AppendContext(session_key="kept", context_type="message", content="x"))
        out = await svc.submit(RequestHandoff(session_key="kept", target_agent="b", accept_within=HOUR))
        assert isinstance(out.envelope.event, HandoffRequested)
        hid = out.envelope.event.handoff_id
        clock.advance(4 * HOUR)

        async def done() -> bool:
            handoff = await svc.handoff(hid)
            return await _all_expired(svc, keys) and handoff is not None and handoff.status == "expired"

        await wait_until(done, 60, "the owner to expire every short session and the handoff")
        assert worker.sweeps.sent >= len(keys) + 1
        kept = await svc.session("kept")
        assert kept is not None and kept.status == "active"
    seen = await _expiries(broker, topics)
    assert seen == Counter({**{("session", k): 1 for k in keys}, ("handoff", hid): 1})


async def test_after_a_failover_the_new_owner_expires_what_fell_due_and_nothing_twice(
    broker: Broker, tmp_path: Path
) -> None:
    topics = Topics(f"t{uuid.uuid4().hex[:8]}", 4)
    clock = ManualClock()
    keys = [f"s-{i}" for i in range(16)]
    async with running_worker(broker.bootstrap, topics, tmp_path / "b", clock=clock, sweep_every=0.1):
        async with running_worker(broker.bootstrap, topics, tmp_path / "a", clock=clock, sweep_every=0.1):
            async with running_service(broker.bootstrap, topics) as svc:
                for key in keys:
                    await svc.submit(RegisterSession(session_key=key, agent_from="a", retention_policy="short"))
                clock.advance(4 * HOUR)  # both owners start sweeping their partitions; then one leaves mid-way
        async with running_service(broker.bootstrap, topics) as svc:
            await wait_until(lambda: _all_expired(svc, keys), 90, "the remaining owner to expire every session")
    seen = await _expiries(broker, topics)
    assert seen == Counter({("session", k): 1 for k in keys})


async def test_a_worker_killed_while_sweeping_leaves_nothing_expired_twice_and_nothing_missed(
    broker: Broker, tmp_path: Path
) -> None:
    """Real time: handoffs that may stay pending 2 s; one of the two owners is SIGKILLed once expiries began."""
    topics = Topics(f"t{uuid.uuid4().hex[:8]}", 4)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("a", "b"):
            cmd = [sys.executable, str(REPO / "tests/kafka/sweep_worker.py"), broker.bootstrap, topics.prefix,
                   str(topics.partitions), str(tmp_path / name)]  # fmt: skip
            with open(tmp_path / f"{name}.log", "ab") as log:
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO))
        async with running_service(broker.bootstrap, topics, timeout=30) as svc:
            handoffs: list[str] = []
            for i in range(40):
                key = f"k-{i}"
                await svc.submit(RegisterSession(session_key=key, agent_from="a"))
                out = await svc.submit(RequestHandoff(session_key=key, target_agent="b", accept_within=2))
                assert isinstance(out.envelope.event, HandoffRequested)
                handoffs.append(out.envelope.event.handoff_id)

            async def expired(hid: str) -> bool:
                view = await svc.handoff(hid)
                return view is not None and view.status == "expired"

            await wait_until(lambda: expired(handoffs[0]), 60, "the first expiry")
            procs[0].send_signal(signal.SIGKILL)  # while the later handoffs are still falling due
            procs[0].wait(10)

            async def all_expired() -> bool:
                return all([await expired(hid) for hid in handoffs])

            await wait_until(all_expired, 120, "the remaining owner to expire every handoff")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    seen = await _expiries(broker, topics)
    assert seen == Counter({("handoff", hid): 1 for hid in handoffs})
