"""The worker: owns some partitions of ``handoff.commands``, decides them, keeps their views, answers reads.

Composition root of ``handoff worker`` (and ``python -m streams.worker``). Partitions come and go
with the consumer group's rebalances; a partition is decided only after it is *prepared*: its
transactional producer is started (fencing the previous owner) and its local store has folded
``handoff.events`` to the end. Any Kafka error while deciding sends the partition back to
preparation, so a broker restart or a fenced producer heals by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import errors as Errors
from aiokafka.client import AIOKafkaClient
from aiokafka.structs import TopicPartition

from handoff import logs
from handoff.config import (
    KAFKA_UNREACHABLE,
    KafkaUnreachable,
    at_least_one,
    kafka_connect_timeout,
    keep_gc_off_the_hot_path,
    read_env,
    try_exclusive,
)
from handoff.engine.ids import Clock, IdGenerator
from handoff.kernel.types import Limits
from handoff.metrics import CONTENT_TYPE
from streams import replication
from streams.decider import Decider, Incoming
from streams.logreader import fetch_committed
from streams.metrics import PartitionState, WorkerMetrics
from streams.partition import EventRecord, PartitionStore
from streams.queryapi import QueryApi
from streams.records import decide_by
from streams.topiccheck import TopicMismatch
from streams.topics import DEFAULT_PARTITIONS, LONG_POLL_MS, Topics, ensure_topics

log = logging.getLogger("handoff.worker")
T = TypeVar("T")

CATCH_UP_REPORT_SECONDS = 10.0  # a partition catching up on a long log says how far it is this often
# How often the decided positions are committed as the group's offsets: only for lag tools such as
# `kafka-consumer-groups.sh --describe`, since a worker takes its position from handoff.progress.
POSITIONS_COMMIT_SECONDS = 5.0


@dataclass
class WorkerConfig:
    """Everything a worker is built from."""

    bootstrap: str
    data_dir: Path
    web_host: str = "127.0.0.1"
    web_port: int = 0
    advertised_url: str | None = None  # the URL announced on handoff.workers (default: http://web_host:port)
    topics: Topics = field(default_factory=Topics)
    worker_id: str = field(default_factory=lambda: f"w-{uuid.uuid4().hex[:12]}")
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], str] = field(default_factory=Clock)
    new_id: Callable[[], str] = field(default_factory=IdGenerator)
    session_timeout_ms: int = 6000
    max_batch: int = 500  # command records per transaction
    max_queued: int = 5000  # consumed records waiting for a decider, over all partitions
    # Partitions whose transactions may be open at once; the others queue and go next with bigger
    # batches. Eight small transactions at once made each wait on the others at the broker: with at
    # most four, bench.kafka's p50 at half load fell from 153 to 92 ms and its p99 at full load from
    # 1.7 s to 0.4-0.5 s, at the same maximum (see `--transactions`).
    transactions: int = 4
    connect_timeout: float = 30.0  # seconds to reach Kafka and join at start-up (HANDOFF_KAFKA_CONNECT_TIMEOUT)


@dataclass
class _Partition:
    store: PartitionStore
    decider: Decider | None = None
    ready: bool = False
    queue: list[Incoming] = field(default_factory=list)  # consumed, not yet decided
    task: asyncio.Task[None] | None = None  # deciding what is queued


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker.release([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.worker.assign([tp.partition for tp in assigned])


class DataDirInUse(RuntimeError):
    """Another worker process holds this data dir."""


def hold_data_dir(data_dir: Path) -> IO[str]:
    """Hold `data_dir` for this worker alone; the lock ends with the returned file (or the process).

    A second worker on the same dir would join the group, take partitions from the first, and then
    fail to open their stores (RocksDB locks each one): those partitions would not be decided at all.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = data_dir / "worker.lock"
    handle = try_exclusive(lock)
    if handle is None:
        holder = lock.read_text().strip()
        by = f"another worker (pid {holder})" if holder.isdigit() else "another worker"
        raise DataDirInUse(f"{data_dir} is in use by {by}; give each worker its own --data-dir")
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class Worker:
    """Decider, projector and query server for the partitions the group gives it."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.topics = config.topics
        self.worker_id = config.worker_id
        self.url = ""
        self.parts: dict[int, _Partition] = {}
        self.pending: set[int] = set()
        self._revocations: Counter[int] = Counter()  # per partition: how often `release` took it
        self._consumer: Any = None
        self._events: Any = None
        self._fetching: Any = None  # reads handoff.events and handoff.progress when a partition is prepared
        self._announcer: Any = None
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the partitions' deciding tasks
        self._slots = asyncio.Semaphore(max(1, config.transactions))  # transactions open at once
        self._held: IO[str] | None = None  # the data dir's lock
        self._store_jobs: set[asyncio.Future[Any]] = set()  # store work in threads; `stop` waits for it
        self.metrics = WorkerMetrics(self)
        self._positions: asyncio.Task[None] | None = None  # committing the decided positions as group offsets

    # -- the Owner protocol of the query endpoint ------------------------------------------------

    def ready_stores(self) -> dict[int, PartitionStore]:
        """Stores of the partitions owned and prepared."""
        return {p: part.store for p, part in self.parts.items() if part.ready}

    def partition_for(self, session_key: str) -> int:
        """The partition of a session."""
        return self.topics.partition_for(session_key)

    # -- what the metrics show ------------------------------------------------------------------------

    def partition_states(self) -> Mapping[int, PartitionState]:
        """Every partition the group gave this worker: ready or not, decided position, end of its commands."""
        if self._consumer is None:
            return {}
        states: dict[int, PartitionState] = {}
        for tp in self._consumer.assignment():
            part = self.parts.get(tp.partition)
            ready = part is not None and part.ready
            decided = part.store.decided if part is not None and ready else -1
            states[tp.partition] = PartitionState(ready, decided, self._consumer.highwater(tp))
        return states

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create topics, serve queries, join the group and start deciding."""
        cfg = self.config
        self._held = hold_data_dir(cfg.data_dir)  # before joining the group: a refused worker takes nothing
        await ensure_topics(cfg.bootstrap, self.topics, group=self.topics.group)
        await self._serve_http()
        self._events = AIOKafkaConsumer(  # only asked for offsets (read_committed: last stable offsets)
            bootstrap_servers=cfg.bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed",
        )  # fmt: skip
        await self._events.start()
        self._fetching = AIOKafkaClient(bootstrap_servers=cfg.bootstrap, client_id=f"{self.worker_id}-prepare")
        await self._fetching.bootstrap()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap, group_id=self.topics.group, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest",
            session_timeout_ms=cfg.session_timeout_ms, heartbeat_interval_ms=max(500, cfg.session_timeout_ms // 6),
            max_poll_interval_ms=120_000, fetch_max_wait_ms=LONG_POLL_MS, client_id=self.worker_id,
        )  # fmt: skip
        self._consumer.subscribe([self.topics.commands], listener=_Rebalance(self))
        await self._consumer.start()
        self._announcer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap, enable_idempotence=True, acks="all")
        await self._announcer.start()
        announcement = json.dumps({"workerId": self.worker_id, "url": self.url}).encode()
        await self._announcer.send_and_wait(self.topics.workers, announcement, key=self.worker_id.encode())
        self._task = asyncio.create_task(self._run(), name="handoff-decider")
        log.info("worker started", extra={"workerId": self.worker_id, "url": self.url})

    async def stop(self) -> None:
        """Leave the group (partitions move to the other workers), withdraw the announcement, close stores."""
        for task in (self._task, self._positions):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._consumer is not None:
            await self._consumer.stop()  # revokes: releases every partition
        await self.release(list(self.parts))
        await asyncio.gather(*self._tasks, return_exceptions=True)  # they end once their partition is released
        if self._announcer is not None:
            with contextlib.suppress(Exception):
                await self._announcer.send_and_wait(self.topics.workers, None, key=self.worker_id.encode())
            await self._announcer.stop()
        if self._events is not None:
            await self._events.stop()
        if self._fetching is not None:
            await self._fetching.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.gather(*self._store_jobs, return_exceptions=True)  # a fold or rebuild still in its thread
        for part in self.parts.values():
            part.store.close()
        self.parts.clear()
        if self._held is not None:
            self._held.close()
        log.info("worker stopped", extra={"workerId": self.worker_id})

    async def _serve_http(self) -> None:
        cfg = self.config
        app = QueryApi(self).app()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.web_host, cfg.web_port))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = cfg.advertised_url or f"http://{cfg.web_host}:{sock.getsockname()[1]}"

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    # -- partitions ---------------------------------------------------------------------------------

    def assign(self, partitions: list[int]) -> None:
        """The group gave us partitions: pause them until they are prepared."""
        for p in partitions:
            self.pending.add(p)
            self._consumer.pause(TopicPartition(self.topics.commands, p))
        log.info("partitions assigned", extra={"workerId": self.worker_id, "partitions": sorted(partitions)})

    async def release(self, partitions: list[int]) -> None:
        """Partitions leave: finish the batch in flight, stop their producers."""
        for p in partitions:
            self.pending.discard(p)
            self._revocations[p] += 1
            part = self.parts.get(p)
            if part is None or part.decider is None:
                continue
            async with part.decider.lock:
                part.ready = False
                part.queue = []
                decider, part.decider = part.decider, None
            await _stop_quietly(decider.producer)
        if partitions:
            log.info("partitions released", extra={"workerId": self.worker_id, "partitions": sorted(partitions)})

    async def _prepare(self, p: int) -> bool:
        """Make partition p ready to decide; False if a rebalance revoked it meanwhile.

        If it came back meanwhile, it is prepared again: the position sought and the producer started
        belong to the assignment it lost.
        """
        revocations = self._revocations[p]
        cfg = self.config
        part = self.parts.get(p)
        if part is None:
            store = PartitionStore(cfg.data_dir / f"p{p}", p, limits=cfg.limits, clock=cfg.clock, new_id=cfg.new_id)
            part = self.parts[p] = _Partition(store)
        producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap, transactional_id=self.topics.transactional_id(p),
            enable_idempotence=True, acks="all", request_timeout_ms=10_000, linger_ms=0, retry_backoff_ms=5,
            max_request_size=8 << 20, transaction_timeout_ms=30_000, max_batch_size=1 << 20,
        )  # fmt: skip
        try:
            await asyncio.wait_for(producer.start(), 20)  # init_transactions: fences the previous owner
            folded = await self._catch_up(part.store)
            tp = TopicPartition(self.topics.commands, p)
            # The decided position moved in the transactions that appended the events just folded. A
            # consumer-group offset is where workers of earlier releases kept it, and later ones commit a
            # position already decided there for lag tools: the later of the two counts.
            positions = [await self._progress(p), await self._consumer.committed(tp)]
            committed = max((o for o in positions if o is not None), default=None)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)
            part.store.mark_decided(-1 if committed is None else committed - 1)
        except BaseException:
            await _stop_quietly(producer)
            raise
        if self._revocations[p] != revocations:
            # A rebalance took the partition while it was prepared (`release` found no decider to stop):
            # serving it now would answer reads from a store that its new owner no longer keeps current.
            await _stop_quietly(producer)
            log.info("partition revoked while it was prepared", extra={"workerId": self.worker_id, "partition": p})
            return False
        part.decider = Decider(part.store, producer, self.topics, self.metrics)
        part.queue = []
        part.ready = True
        self._consumer.resume(tp)
        log.info("partition ready", extra={"workerId": self.worker_id, "partition": p, "folded": folded})
        return True

    async def _catch_up(self, store: PartitionStore) -> int:
        """Fold the partition's events that its store has not applied, up to the end of the log.

        A store that cannot have been folded from this log (its data dir served another one: a broker
        whose state was reset, another topic prefix) is emptied first and folds this log from its start:
        deciding on it would continue hash chains this log does not hold.
        """
        tp = TopicPartition(self.topics.events, store.partition)
        end = (await self._events.end_offsets([tp]))[tp]  # read_committed: the last stable offset
        why = await self._not_from(store, tp, end)
        if why is not None:
            log.warning(
                "partition store was not built from this log; rebuilding it from the log",
                extra={"partition": store.partition, "path": str(store.path), "reason": why},
            )
            await self.in_thread(store.empty)
            self.metrics.rebuilds.inc()
        folded, start = 0, store.applied + 1
        report_at = time.monotonic() + CATCH_UP_REPORT_SECONDS
        async for chunk in fetch_committed(self._fetching, tp, start, end):
            records = [EventRecord(m.offset, m.value, {k: v.decode() for k, v in m.headers}) for m in chunk]
            applied = await self.in_thread(store.catch_up, records)
            self.metrics.folded.inc(applied)
            folded += applied
            if time.monotonic() >= report_at and chunk[-1].offset + 1 < end:
                done = round(100 * (chunk[-1].offset + 1 - start) / (end - start))
                extra = {"partition": store.partition, "folded": folded, "offset": chunk[-1].offset, "end": end}
                log.info("catching up on the log", extra={**extra, "percent": done})
                report_at = time.monotonic() + CATCH_UP_REPORT_SECONDS
        return folded

    async def in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """Run store work in a thread (a fold, a digest), which `stop` lets finish before it closes the stores.

        Cancelling an await of `asyncio.to_thread` does not stop the thread: closing a RocksDB store
        while a fold is still writing to it is what this prevents.
        """
        job = asyncio.ensure_future(asyncio.to_thread(work, *args))
        self._store_jobs.add(job)
        job.add_done_callback(self._store_jobs.discard)
        return await asyncio.shield(job)

    async def _not_from(self, store: PartitionStore, tp: TopicPartition, end: int) -> str | None:
        """Why `store` cannot have been folded from partition `tp` of the log, or None if it can.

        A store says which offset it folded last; the log must hold, at that offset, the very event the
        store holds at that event's session and version.
        """
        at = store.applied
        if at < 0:
            return None
        where = f"{tp.topic}[{tp.partition}]"
        if at >= end:
            return f"the store has folded up to offset {at}, but {where} ends at offset {end}"
        try:
            found = [m async for chunk in fetch_committed(self._fetching, tp, at, at + 1, 1 << 16) for m in chunk]
        except Errors.OffsetOutOfRangeError:
            found = []
        if not found or not store.holds(found[0].value):
            return f"the event at offset {at} of {where} is not the one the store folded there"
        return None

    async def _progress(self, p: int) -> int | None:
        """Partition p's decided position: the value of the last committed record of its progress partition."""
        tp = TopicPartition(self.topics.progress, p)
        begin = (await self._events.beginning_offsets([tp]))[tp]
        end = (await self._events.end_offsets([tp]))[tp]  # read_committed: the last stable offset
        window = 8  # a transaction's record and its commit marker; aborted ones and compaction may need more
        while True:
            start = max(begin, end - window)
            found: int | None = None
            async for chunk in fetch_committed(self._fetching, tp, start, end):
                for m in chunk:
                    if m.value is not None:
                        found = int(m.value)
            if found is not None or start == begin:
                return found
            window *= 16

    # -- the decide loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Poll commands and hand each partition's records to that partition's deciding task.

        Partitions decide concurrently (each has its own transactional producer), and while one
        transaction commits the records that arrive meanwhile queue up and go into the next one:
        under load a transaction carries many commands, which is where the throughput comes from.
        """
        consumer = self._consumer
        commit_at = time.monotonic() + POSITIONS_COMMIT_SECONDS
        while True:
            await self._prepare_pending()
            if time.monotonic() >= commit_at and (self._positions is None or self._positions.done()):
                self._positions = asyncio.create_task(self._commit_positions(), name="handoff-positions")
                commit_at = time.monotonic() + POSITIONS_COMMIT_SECONDS
            while sum(len(part.queue) for part in self.parts.values()) > self.config.max_queued:
                await asyncio.sleep(0.001)  # backpressure: the deciders are behind
            data = await consumer.getmany(timeout_ms=50, max_records=self.config.max_batch)
            for tp, messages in data.items():
                part = self.parts.get(tp.partition)
                if part is None or not part.ready or part.decider is None or tp.partition in self.pending:
                    continue  # re-read from the committed offset once prepared
                part.queue.extend(Incoming(m.offset, m.value, decide_by(m.headers)) for m in messages)
                if part.task is None or part.task.done():
                    part.task = asyncio.create_task(self._decide(tp.partition, part), name=f"decide-{tp.partition}")
                    part.task.add_done_callback(self._tasks.discard)
                    self._tasks.add(part.task)

    async def _decide(self, p: int, part: _Partition) -> None:
        """Decide what is queued for a partition, one transaction per round, until the queue is empty."""
        decider = part.decider
        while part.queue and decider is not None and part.decider is decider and part.ready:
            try:
                async with self._slots:  # what arrives while waiting for a slot joins this batch
                    records, part.queue = part.queue[: self.config.max_batch], part.queue[self.config.max_batch :]
                    async with decider.lock:
                        if records and part.decider is decider and part.ready:
                            await decider.process(records)
            except Exception:  # noqa: BLE001 - a Kafka failure: re-prepare the partition, never die
                self.metrics.failures.inc()
                log.exception("deciding failed; preparing the partition again", extra={"partition": p})
                await self._unready(p)
                return

    async def _commit_positions(self) -> None:
        """Commit each ready partition's decided position as the group's offset, for lag tools.

        Never ahead of ``handoff.progress`` (it is read from a store after its transaction committed),
        so `_prepare`, which takes the later of the two, still starts from the progress record.
        """
        offsets = {
            TopicPartition(self.topics.commands, p): decided + 1
            for p, part in list(self.parts.items())
            if part.ready and (decided := part.store.decided) >= 0
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Errors.KafkaError as exc:  # a rebalance moved partitions meanwhile, or the broker is away
            log.debug("committing decided positions as group offsets failed", extra={"error": repr(exc)})
        except Exception:  # noqa: BLE001 - best effort for lag tools: log it, not an unretrieved task exception
            log.warning("committing decided positions as group offsets failed", exc_info=True)

    async def _unready(self, p: int) -> None:
        part = self.parts[p]
        part.ready = False
        part.queue = []  # re-read from the committed offset once prepared again
        decider, part.decider = part.decider, None
        if decider is not None:
            await _stop_quietly(decider.producer)
        if p in {tp.partition for tp in self._consumer.assignment()}:
            self.pending.add(p)
            self._consumer.pause(TopicPartition(self.topics.commands, p))

    async def _prepare_pending(self) -> None:
        for p in sorted(self.pending):
            if p not in {tp.partition for tp in self._consumer.assignment()}:
                self.pending.discard(p)
                continue
            try:
                if await self._prepare(p):
                    self.pending.discard(p)
            except Exception:  # noqa: BLE001 - the broker may be away: try again on the next round
                log.warning("preparing partition %d failed; retrying", p, exc_info=True)
                await asyncio.sleep(0.5)


async def _stop_quietly(producer: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 10)


# -- composition root -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Options of ``handoff worker``."""
    parser = argparse.ArgumentParser(
        prog="handoff worker",
        description="A Kafka-mode worker: decides the commands of the partitions it owns, keeps their views, "
        "and answers reads for them. Several workers share the partitions.",
        epilog="example: handoff worker --kafka 127.0.0.1:9092 --data-dir ./w1 --web-port 8800",
    )
    parser.add_argument(
        "--kafka",
        metavar="BOOTSTRAP",
        default=os.environ.get("HANDOFF_KAFKA_BOOTSTRAP"),
        help="Kafka bootstrap servers (default: $HANDOFF_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="this worker's stores, one RocksDB per owned partition; one directory per worker process "
        "(default: $HANDOFF_DATA_DIR or the user data dir + /handoff, then /worker); a lost one, or one "
        "folded from another log, is rebuilt from handoff.events",
    )
    parser.add_argument("--web-host", default="127.0.0.1", help="interface of the query endpoint")
    parser.add_argument(
        "--web-port", type=int, default=0, help="port of the query endpoint, which also serves /metrics (0: a free one)"
    )
    parser.add_argument("--advertised-url", default=None, help="URL other processes reach the endpoint at")
    parser.add_argument(
        "--partitions",
        type=int,
        default=int(os.environ.get("HANDOFF_KAFKA_PARTITIONS") or DEFAULT_PARTITIONS),
        help="partitions of the topics it creates (default: $HANDOFF_KAFKA_PARTITIONS or 8)",
    )
    parser.add_argument(
        "--topic-prefix",
        default=os.environ.get("HANDOFF_KAFKA_TOPIC_PREFIX") or "handoff",
        help="topic names are PREFIX.commands, PREFIX.events, ... (default: $HANDOFF_KAFKA_TOPIC_PREFIX or handoff)",
    )
    parser.add_argument("--worker-id", default=None, help="a stable name for this worker (default: random)")
    parser.add_argument(
        "--transactions",
        type=at_least_one,
        default=WorkerConfig.transactions,
        metavar="N",
        help="partitions whose transactions may be open at once; the others wait and commit bigger batches "
        f"next, which shortens the queue behind the broker under load (default: {WorkerConfig.transactions})",
    )
    replication.add_arguments(parser)
    return parser


async def run_worker(config: WorkerConfig) -> None:
    """Run until SIGTERM or SIGINT, then leave the group cleanly."""
    worker = Worker(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(worker.start(), config.connect_timeout)
    except (Errors.KafkaError, TimeoutError) as exc:
        await worker.stop()
        raise KafkaUnreachable(str(exc) or type(exc).__name__) from exc
    # Latency: the cyclic GC's full collections paused the loop for ~60 ms, all in-flight commands with it.
    keep_gc_off_the_hot_path(50_000, (20, 100))
    print(json.dumps({"workerId": worker.worker_id, "url": worker.url}), file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await worker.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m streams.worker --kafka HOST:PORT [--data-dir DIR] [--web-port N]``."""
    ns = build_parser().parse_args(argv)
    if not ns.kafka:
        print("handoff worker: --kafka BOOTSTRAP (or HANDOFF_KAFKA_BOOTSTRAP) is required", file=sys.stderr)
        return 2
    env = read_env()
    logs.configure(env.log_level)
    worker_id = ns.worker_id or f"w-{uuid.uuid4().hex[:12]}"
    data_dir = ns.data_dir or env.data_dir / "worker"
    config = WorkerConfig(
        bootstrap=ns.kafka, data_dir=data_dir, web_host=ns.web_host, web_port=ns.web_port,
        advertised_url=ns.advertised_url,
        topics=Topics(ns.topic_prefix, ns.partitions, replication.from_arguments(ns, os.environ)),
        worker_id=worker_id, transactions=ns.transactions, connect_timeout=kafka_connect_timeout(os.environ),
    )  # fmt: skip
    try:
        asyncio.run(run_worker(config))
    except (DataDirInUse, TopicMismatch) as exc:
        print(f"handoff worker: {exc}", file=sys.stderr)
        return 1
    except KafkaUnreachable as exc:
        log.error(KAFKA_UNREACHABLE, extra={"error": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
