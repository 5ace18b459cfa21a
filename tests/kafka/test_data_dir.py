"""A worker's data dir: held by one worker at a time, and a cache of one log.

The default data dir outlives a local broker's state (and several topic prefixes may share one), so a
worker can meet stores whose offsets point into a different ``handoff.events``: a store filled from
another log is rebuilt, never decided on, since deciding on it would append events that continue
chains the log does not hold.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.events import GENESIS_HASH
from kafka.support import (
    REPO,
    Broker,
    fresh_fold_digest,
    keys_on_every_partition,
    read_events,
    running_service,
    running_worker,
    served_digest,
    wait_until,
)
from streams import catchup
from streams.catchup import LogCatchUp
from streams.client import KafkaService
from streams.fetch import fetch_committed
from streams.lifecycle import Partitions
from streams.partition import PartitionStore
from streams.topics import Topics
from streams.worker import Worker, WorkerConfig, hold_data_dir

pytestmark = pytest.mark.anyio

STALE = "rebuilding it from the log"


async def _script(svc: KafkaService, keys: list[str], appends: int) -> None:
    for key in keys:
        await svc.submit(RegisterSession(session_key=key, agent_from="first"))
        for i in range(appends):
            await svc.submit(AppendContext(session_key=key, context_type="message", content=f"{key} {i}"))


@pytest.mark.parametrize("other_log", ["empty", "longer"])
async def test_a_store_built_from_another_log_is_rebuilt_before_the_worker_decides(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture, other_log: str
) -> None:
    first, second = (Topics(f"{name}{uuid.uuid4().hex[:8]}", 2) for name in ("a", "b"))
    keys = keys_on_every_partition(first, "s", 2)
    data_dir = tmp_path / "w"
    async with running_worker(broker.bootstrap, first, data_dir), running_service(broker.bootstrap, first) as svc:
        await _script(svc, keys, 3)
    if other_log == "longer":  # the second log is longer than the first where the stores point into it
        async with running_worker(broker.bootstrap, second, tmp_path / "other"):
            async with running_service(broker.bootstrap, second) as svc:
                await _script(svc, keys_on_every_partition(second, "o", 2), 8)

    caplog.set_level(logging.WARNING, logger="handoff.worker")
    caplog.clear()  # only the records of the worker on the second log count
    async with running_worker(broker.bootstrap, second, data_dir), running_service(broker.bootstrap, second) as svc:
        for key in keys:
            assert await svc.session(key) is None  # the first log's sessions are not in this one
            out = await svc.submit(RegisterSession(session_key=key, agent_from="second"))
            assert (out.envelope.version, out.envelope.prev_hash) == (1, GENESIS_HASH)
        events = await read_events(broker.bootstrap, second)
        assert await served_digest(svc, second) == fresh_fold_digest(events)
    assert sum(STALE in r.getMessage() for r in caplog.records) == second.partitions, caplog.text


async def test_a_store_of_the_same_log_is_kept_and_caught_up_with_progress_reports(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = Topics(f"c{uuid.uuid4().hex[:8]}", 2)
    keys = keys_on_every_partition(topics, "s", 2)
    data_dir = tmp_path / "w"
    async with running_worker(broker.bootstrap, topics, data_dir), running_service(broker.bootstrap, topics) as svc:
        await _script(svc, keys, 2)
    async with running_worker(broker.bootstrap, topics, tmp_path / "other"):  # the log moves on without it
        async with running_service(broker.bootstrap, topics) as svc:
            for key in keys:
                await svc.submit(AppendContext(session_key=key, context_type="message", content="later"))

    # A fetch at a time per record batch and a report after each: what a long catch-up does every 10 s.
    monkeypatch.setattr(catchup, "CATCH_UP_REPORT_SECONDS", 0.0)
    monkeypatch.setattr(
        catchup, "fetch_committed", lambda c, tp, start, end, _=0: fetch_committed(c, tp, start, end, 1)
    )
    caplog.set_level(logging.INFO, logger="handoff.worker")
    caplog.clear()  # only the records of the restarted worker count
    async with running_worker(broker.bootstrap, topics, data_dir), running_service(broker.bootstrap, topics) as svc:
        for key in keys:
            assert (await svc.session(key)).version == 4  # type: ignore[union-attr]
        events = await read_events(broker.bootstrap, topics)
        assert await served_digest(svc, topics) == fresh_fold_digest(events)
    assert not any(STALE in r.getMessage() for r in caplog.records), caplog.text
    folded = [r.__dict__.get("folded") for r in caplog.records if r.getMessage() == "partition ready"]
    assert sum(folded) == len(keys), folded  # the store was kept: only the later events were folded into it
    reports = [r.__dict__ for r in caplog.records if r.getMessage() == "catching up on the log"]
    assert reports and all(0 < r["percent"] < 100 and r["offset"] < r["end"] for r in reports), reports


def test_a_second_worker_on_a_held_data_dir_exits_before_joining_the_group(broker: Broker, tmp_path: Path) -> None:
    data_dir = tmp_path / "w"
    held = hold_data_dir(data_dir)  # as a running worker holds it
    try:
        done = subprocess.run(
            [sys.executable, "-m", "handoff", "worker", "--kafka", broker.bootstrap, "--data-dir", str(data_dir),
             "--topic-prefix", f"d{uuid.uuid4().hex[:8]}"],
            capture_output=True, text=True, timeout=60, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
        )  # fmt: skip
    finally:
        held.close()
    assert done.returncode == 1, done.stderr
    assert f"{data_dir} is in use by another worker (pid {os.getpid()}); give each worker its own --data-dir" in (
        done.stderr
    )
    assert not (data_dir / "p0").exists()  # it opened no store


async def test_a_worker_stopped_during_a_catch_up_closes_its_stores_only_after_the_fold(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = Topics(f"m{uuid.uuid4().hex[:8]}", 2)
    async with running_worker(broker.bootstrap, topics, tmp_path / "first"):
        async with running_service(broker.bootstrap, topics) as svc:
            await _script(svc, keys_on_every_partition(topics, "s", 1), 2)

    seen: list[str] = []
    fold, close = PartitionStore.catch_up, PartitionStore.close

    def slow_fold(store: PartitionStore, records: Any) -> int:  # a long catch-up's chunk, in its thread
        seen.append("fold started")
        time.sleep(2.0)
        folded = fold(store, records)
        seen.append("fold ended")
        return folded

    def closing(store: PartitionStore) -> None:
        seen.append("close")
        close(store)

    monkeypatch.setattr(PartitionStore, "catch_up", slow_fold)
    monkeypatch.setattr(PartitionStore, "close", closing)
    worker = Worker(WorkerConfig(bootstrap=broker.bootstrap, data_dir=tmp_path / "second", topics=topics))
    await worker.start()

    async def folding() -> bool:
        return "fold started" in seen

    await wait_until(folding, 60, "a partition to start catching up")
    await worker.stop()  # while the fold sleeps in its thread
    assert seen.count("fold started") == seen.count("fold ended") == 1, seen
    assert seen.index("fold ended") < seen.index("close"), seen


async def test_a_partition_revoked_while_it_is_prepared_is_neither_decided_nor_served(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = Topics(f"r{uuid.uuid4().hex[:8]}", 1)
    catching_up, go_on, prepared = asyncio.Event(), asyncio.Event(), asyncio.Event()
    catch_up, prepare = LogCatchUp.catch_up, Partitions._prepare  # noqa: SLF001 - wrapped to hold a catch-up midway

    async def held_catch_up(log: LogCatchUp, store: PartitionStore) -> int:
        catching_up.set()
        await go_on.wait()
        return await catch_up(log, store)

    async def noted_prepare(partitions: Partitions, p: int) -> bool:
        try:
            return await prepare(partitions, p)
        finally:
            prepared.set()

    monkeypatch.setattr(LogCatchUp, "catch_up", held_catch_up)
    monkeypatch.setattr(Partitions, "_prepare", noted_prepare)
    async with running_worker(broker.bootstrap, topics, tmp_path / "w") as worker:
        await asyncio.wait_for(catching_up.wait(), 60)
        await worker.release([0])  # what the group's rebalance callback does when another worker takes it
        go_on.set()
        await asyncio.wait_for(prepared.wait(), 60)
        assert worker.ready_stores() == {}
        assert worker.parts[0].decider is None
