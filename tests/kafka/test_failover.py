"""Failover and recovery: two worker processes, one SIGKILLed mid-run; then one rebuilt from a deleted data dir.

The issue's size by default: HANDOFF_FAILOVER_COMMANDS (10000) over HANDOFF_FAILOVER_SESSIONS (200);
about 25 s on the 2-core machine. Smaller values make a quicker run while working on it.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.errors import Unavailable
from handoff.kernel.events import GENESIS_HASH, ContextAppended
from kafka.support import Broker, WorkerProcess, fresh_fold_digest, read_events, running_service, served_digest
from streams.client import KafkaService
from streams.topics import Topics

pytestmark = pytest.mark.anyio

COMMANDS = int(os.environ.get("HANDOFF_FAILOVER_COMMANDS", "10000"))
SESSIONS = int(os.environ.get("HANDOFF_FAILOVER_SESSIONS", "200"))
PRODUCERS = 4
LANES = 12  # concurrent calls per producer


async def produce(svc: KafkaService, keys: list[str], name: str, count: int, acked: dict[str, tuple[str, int]],
                  progress: list[int]) -> None:  # fmt: skip
    rng = random.Random(name)
    todo = [f"{name}-{i}" for i in range(count)]

    async def lane(items: list[str]) -> None:
        for content in items:
            key = rng.choice(keys)
            try:
                out = await svc.submit(AppendContext(session_key=key, context_type="message", content=content))
            except Unavailable:
                continue  # not acknowledged: may or may not be applied, but never twice
            assert isinstance(out.envelope.event, ContextAppended)
            acked[content] = (key, out.envelope.event.sequence_number)
            progress[0] += 1

    await asyncio.gather(*(lane(todo[i::LANES]) for i in range(LANES)))


@pytest.mark.parametrize("kafka_accel", ["1", "0"], ids=["accelerated", "public"])
async def test_a_killed_worker_loses_no_acknowledged_write_and_a_rebuilt_one_serves_the_same_views(
    broker: Broker, tmp_path: Path, kafka_accel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDOFF_KAFKA_ACCEL", kafka_accel)  # for the worker processes: exactly once on either path
    commands = COMMANDS if kafka_accel == "1" else COMMANDS // 4  # the public path: the same kill, a shorter run
    topics = Topics(f"f{uuid.uuid4().hex[:8]}", 8)
    workers = [WorkerProcess(broker.bootstrap, topics, tmp_path / f"w{i}", tmp_path / f"w{i}.log") for i in (1, 2)]
    for w in workers:
        w.start()
    try:
        async with running_service(broker.bootstrap, topics, timeout=60) as svc:
            keys = [f"s{i}-{uuid.uuid4().hex[:6]}" for i in range(SESSIONS)]
            await asyncio.gather(*(svc.submit(RegisterSession(session_key=k, agent_from="a")) for k in keys))
            acked: dict[str, tuple[str, int]] = {}
            progress = [0]
            run = asyncio.gather(
                *(produce(svc, keys, f"p{i}", commands // PRODUCERS, acked, progress) for i in range(PRODUCERS))
            )
            while progress[0] < commands // 3:
                await asyncio.sleep(0.05)
            workers[0].kill()
            await run
            assert len(acked) >= commands * 0.95, f"only {len(acked)} of {commands} acknowledged"

            events = await read_events(broker.bootstrap, topics)
            by_session = defaultdict(list)
            for _, _, env, _ in sorted(events, key=lambda e: (e[0], e[1])):
                by_session[env.session_key].append(env)
            seen: dict[str, tuple[str, int]] = {}
            for key, stream in by_session.items():
                assert [e.version for e in stream] == list(range(1, len(stream) + 1)), f"versions of {key}"
                prev = GENESIS_HASH
                for env in stream:
                    assert env.prev_hash == prev, f"hash chain of {key} forks at version {env.version}"
                    prev = env.hash
                    if isinstance(env.event, ContextAppended):
                        assert env.event.content not in seen, f"{env.event.content} applied twice"
                        seen[env.event.content] = (key, env.event.sequence_number)
                seqs = [e.event.sequence_number for e in stream if isinstance(e.event, ContextAppended)]
                assert seqs == list(range(2, len(seqs) + 2)), f"sequence numbers of {key}"
                view = await svc.session(key)
                assert view is not None and view.version == len(stream)
            for content, where in acked.items():
                assert seen.get(content) == where, f"acknowledged {content} at {where}, log has {seen.get(content)}"
            expected = fresh_fold_digest(events)
            assert await served_digest(svc, topics) == expected

            # Recovery: the killed worker comes back with its data dir deleted; the other one leaves.
            shutil.rmtree(workers[0].data_dir, ignore_errors=True)
            workers[0].start()
            workers[1].stop()
            assert await served_digest(svc, topics) == expected
    finally:
        for w in workers:
            w.stop()
