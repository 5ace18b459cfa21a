"""Helpers of the Kafka tier: the broker handle, workers (in-process and as processes), reading topics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from handoff.kernel.codec import decode_envelope
from handoff.kernel.events import Envelope
from handoff.storage.datakeys import revealer
from handoff.storage.digest import digest
from handoff.storage.kv import InMemoryKeyValue
from projections.replay import fold_events
from streams.client import KafkaService
from streams.topics import Topics
from streams.worker import Worker, WorkerConfig

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Broker:
    bootstrap: str
    script: Path
    env: dict[str, str]

    def run(self, action: str) -> None:
        done = subprocess.run([str(self.script), action], env=self.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"kafka-local.sh {action} failed:\n{done.stderr[-3000:]}"


def keys_on_every_partition(topics: Topics, prefix: str, each: int) -> list[str]:
    """`each` new session keys on every partition of `topics` (random keys may leave a partition without)."""
    keys: dict[int, list[str]] = {p: [] for p in range(topics.partitions)}
    while any(len(k) < each for k in keys.values()):
        key = f"{prefix}-{uuid.uuid4().hex[:8]}"
        keys[topics.partition_for(key)].append(key)
    return [k for p in keys.values() for k in p[:each]]


async def wait_until(condition: Callable[[], Awaitable[Any]], deadline: float, what: str) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(0.1)


async def produce(bootstrap: str, topic: str, key: str, *records: tuple[bytes, list[tuple[str, bytes]]]) -> None:
    """Produce (value, headers) records in order, keyed by `key`, as a platform would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait(topic, value, key=key.encode(), headers=headers)
    finally:
        await producer.stop()


async def until_version(service: KafkaService, key: str, version: int, what: str) -> None:
    """Wait until the session's view is at `version`."""

    async def reached() -> bool:
        view = await service.session(key)
        return view is not None and view.version == version

    await wait_until(reached, 30, what)


@asynccontextmanager
async def running_worker(bootstrap: str, topics: Topics, data_dir: Path, **kw: Any) -> AsyncIterator[Worker]:
    worker = Worker(WorkerConfig(bootstrap=bootstrap, data_dir=data_dir, topics=topics, **kw))
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


@asynccontextmanager
async def running_service(bootstrap: str, topics: Topics, timeout: float = 15.0) -> AsyncIterator[KafkaService]:
    svc = KafkaService(bootstrap, topics=topics, timeout=timeout)
    await svc.start()
    try:
        await wait_until(svc.ready, 60, "every partition to have a ready worker")
        yield svc
    finally:
        await svc.stop()


@dataclass
class WorkerProcess:
    """`python -m handoff worker` as a child process, its log in a file."""

    bootstrap: str
    topics: Topics
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "handoff", "worker", "--kafka", self.bootstrap, "--data-dir", str(self.data_dir),
            "--topic-prefix", self.topics.prefix, "--partitions", str(self.topics.partitions), *self.extra,
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


async def read_keys(bootstrap: str, topics: Topics) -> dict[str, bytes]:
    """The live data keys of ``handoff.keys`` (a tombstone removes its session's key)."""
    keys: dict[str, bytes] = {}
    for m in await read_topic(bootstrap, topics.keys, topics.partitions):
        if m.value is None:
            keys.pop(m.key.decode(), None)
        else:
            keys[m.key.decode()] = m.value
    return keys


async def read_events(
    bootstrap: str, topics: Topics, *, shown: bool = True
) -> list[tuple[int, int, Envelope, dict[str, str]]]:
    """Every committed event: (partition, offset, envelope, headers); `shown`: in the clear while its key lives."""
    reveal = revealer(await read_keys(bootstrap, topics)) if shown else (lambda env: env)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topics.events, p) for p in range(topics.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[tuple[int, int, Envelope, dict[str, str]]] = []
        while not await _at_end(consumer, ends):
            data = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, messages in data.items():
                for m in messages:
                    headers = {k: v.decode() for k, v in m.headers}
                    out.append((tp.partition, m.offset, reveal(decode_envelope(m.value)), headers))
        return out
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, partitions: int = 1, *, aborted: bool = False) -> list[Any]:
    """Every committed record of a topic; with `aborted`, those of aborted transactions too (read_uncommitted)."""
    isolation = "read_uncommitted" if aborted else "read_committed"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, isolation_level=isolation, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts) if aborted else await _settled_ends(bootstrap, consumer, parts)
        out: list[Any] = []
        while not await _at_end(consumer, ends):
            data = await consumer.getmany(timeout_ms=500)
            for messages in data.values():
                out.extend(messages)
        return out
    finally:
        await consumer.stop()


async def _settled_ends(bootstrap: str, consumer: Any, parts: list[Any], wait: float = 15.0) -> dict[Any, int]:
    """The committed ends once every transaction that had written by now has its marker.

    A transaction's commit returns once the coordinator has decided it; the markers reach the
    partitions a moment later, and until then a read_committed end (the last stable offset) stops
    short of records already committed. Wait for it to pass every record written when we looked
    (`wait` bounds it: a transaction left open by a killed producer ends only by timeout or fencing).
    """
    raw = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, isolation_level="read_uncommitted")
    await raw.start()
    try:
        written = await raw.end_offsets(parts)
    finally:
        await raw.stop()
    deadline = time.monotonic() + wait
    while True:
        ends = await consumer.end_offsets(parts)
        if all(ends[tp] >= written[tp] for tp in parts) or time.monotonic() > deadline:
            return ends
        await asyncio.sleep(0.05)


async def _at_end(consumer: Any, ends: dict[Any, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def fresh_fold_digest(events: list[tuple[int, int, Envelope, dict[str, str]]]) -> str:
    kv = InMemoryKeyValue()
    fold_events(kv, (env for _, _, env, _ in sorted(events, key=lambda e: (e[0], e[1]))))
    return digest(kv)


async def served_digest(svc: KafkaService, topics: Topics) -> str:
    """The digest of every view the workers serve, partitions merged into one store."""
    kv = InMemoryKeyValue()
    for p in range(topics.partitions):
        kv.write(await svc.dump_partition(p))
    return digest(kv)
