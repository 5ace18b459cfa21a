"""`Partitions`: the lifecycle of the partitions the group gives a worker: assigned, prepared, released.

A partition is decided only after it is *prepared*: its transactional producer is started (fencing
the previous owner), its local store has folded ``handoff.events`` to the end, and the group consumer
is positioned after the last command decided. A partition that fails while deciding goes back to
preparation (`unready`), so a broker restart or a fenced producer heals by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from projections.tallies import view_counts
from streams.catchup import LogCatchUp
from streams.decider import Decider, Incoming
from streams.metrics import PartitionState, WorkerMetrics
from streams.partition import PartitionStore
from streams.topics import LONG_POLL_MS
from streams.trimming import CommandTrimmer

if TYPE_CHECKING:
    from streams.worker import WorkerConfig

log = logging.getLogger("handoff.worker")
T = TypeVar("T")


@dataclass
class OwnedPartition:
    """A partition the group gave this worker: its store, and its decider once prepared."""

    store: PartitionStore
    decider: Decider | None = None
    ready: bool = False
    queue: list[Incoming] = field(default_factory=list)  # consumed, not yet decided
    task: asyncio.Task[None] | None = None  # deciding what is queued


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """The group consumer's rebalance callbacks, handed to `Partitions`."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Partitions leave this worker."""
        await self.partitions.release([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """Partitions come to this worker."""
        self.partitions.assign([tp.partition for tp in assigned])


async def stop_quietly(producer: Any) -> None:
    """Stop a producer, whatever state its connection is in."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 10)


class Partitions:
    """The partitions owned by one worker, their stores, and their way from assigned to ready and back."""

    def __init__(self, config: WorkerConfig, metrics: WorkerMetrics, trimmer: CommandTrimmer | None = None) -> None:
        self.config = config
        self.trimmer = trimmer  # handed to every decider: decided command records go once committed
        self.topics = config.topics
        self.metrics = metrics
        self.parts: dict[int, OwnedPartition] = {}
        self.pending: set[int] = set()  # assigned, not prepared yet
        self.consumer: Any = None  # the group consumer of handoff.commands, from `start`
        self._revocations: Counter[int] = Counter()  # per partition: how often `release` took it
        self.catchup = LogCatchUp(config, metrics, self.in_thread)  # what preparing reads from the log
        self._store_jobs: set[asyncio.Future[Any]] = set()  # store work in threads; `close` waits for it

    async def start(self) -> None:
        """Connect the clients that preparing reads the log with, then join the group."""
        cfg = self.config
        await self.catchup.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap, group_id=self.topics.group, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest",
            session_timeout_ms=cfg.session_timeout_ms, heartbeat_interval_ms=max(500, cfg.session_timeout_ms // 6),
            max_poll_interval_ms=120_000, fetch_max_wait_ms=LONG_POLL_MS, client_id=cfg.worker_id,
            **cfg.security.client_kwargs(),
        )  # fmt: skip
        self.consumer.subscribe([self.topics.commands], listener=Rebalance(self))
        await self.consumer.start()

    async def leave(self) -> None:
        """Leave the group (its partitions move to the other workers) and release every partition."""
        if self.consumer is not None:
            await self.consumer.stop()  # revokes: releases every partition
        await self.release(list(self.parts))

    async def close(self) -> None:
        """Disconnect, let store work in threads finish, close the stores."""
        await self.catchup.close()
        await asyncio.gather(*self._store_jobs, return_exceptions=True)  # a fold or rebuild still in its thread
        for part in self.parts.values():
            part.store.close()
        self.parts.clear()

    def ready_stores(self) -> dict[int, PartitionStore]:
        """Stores of the partitions owned and prepared."""
        return {p: part.store for p, part in self.parts.items() if part.ready}

    def assigned(self) -> set[int]:
        """The partitions the group gives this worker now."""
        return {tp.partition for tp in self.consumer.assignment()}

    def partition_states(self) -> Mapping[int, PartitionState]:
        """Every partition the group gave this worker: ready or not, decided position, end of its commands."""
        if self.consumer is None:
            return {}
        states: dict[int, PartitionState] = {}
        for tp in self.consumer.assignment():
            part = self.parts.get(tp.partition)
            ready = part is not None and part.ready
            decided = part.store.decided if part is not None and ready else -1
            states[tp.partition] = PartitionState(ready, decided, self.consumer.highwater(tp))
        return states

    async def in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """Run store work in a thread (a fold, a digest), which `close` lets finish before it closes the stores.

        Cancelling an await of `asyncio.to_thread` does not stop the thread: closing a RocksDB store
        while a fold is still writing to it is what this prevents.
        """
        job = asyncio.ensure_future(asyncio.to_thread(work, *args))
        self._store_jobs.add(job)
        job.add_done_callback(self._store_jobs.discard)
        return await asyncio.shield(job)

    # -- assigned, released, unready ----------------------------------------------------------------

    def assign(self, partitions: list[int]) -> None:
        """The group gave us partitions: pause them until they are prepared."""
        for p in partitions:
            self.pending.add(p)
            self.consumer.pause(TopicPartition(self.topics.commands, p))
        log.info("partitions assigned", extra={"workerId": self.config.worker_id, "partitions": sorted(partitions)})

    async def release(self, partitions: list[int]) -> None:
        """Partitions leave: finish the batch in flight, stop their producers."""
        for p in partitions:
            self.pending.discard(p)
            self._revocations[p] += 1
            self.metrics.business.untrack(p)
            part = self.parts.get(p)
            if part is None or part.decider is None:
                continue
            async with part.decider.lock:
                part.ready = False
                part.queue = []
                decider, part.decider = part.decider, None
            await stop_quietly(decider.producer)
        if partitions:
            log.info("partitions released", extra={"workerId": self.config.worker_id, "partitions": sorted(partitions)})

    async def unready(self, p: int) -> None:
        """Partition p failed while deciding: stop its producer and prepare it again if it is still ours."""
        part = self.parts[p]
        part.ready = False
        self.metrics.business.untrack(p)
        part.queue = []  # re-read from the committed offset once prepared again
        decider, part.decider = part.decider, None
        if decider is not None:
            await stop_quietly(decider.producer)
        if p in self.assigned():
            self.pending.add(p)
            self.consumer.pause(TopicPartition(self.topics.commands, p))

    # -- preparing ----------------------------------------------------------------------------------

    async def prepare_pending(self) -> None:
        """Prepare every partition assigned and not prepared yet; one that fails is tried again next time."""
        for p in sorted(self.pending):
            if p not in self.assigned():
                self.pending.discard(p)
                continue
            try:
                if await self._prepare(p):
                    self.pending.discard(p)
            except Exception:
                log.warning("preparing partition %d failed; retrying", p, exc_info=True)
                await asyncio.sleep(0.5)

    async def _prepare(self, p: int) -> bool:
        """Make partition p ready to decide; False if a rebalance revoked it meanwhile.

        If it came back meanwhile, it is prepared again: the position sought and the producer started
        belong to the assignment it lost.
        """
        revocations = self._revocations[p]
        part = self._owned(p)
        producer = self._producer(p)
        try:
            await asyncio.wait_for(producer.start(), 20)  # init_transactions: fences the previous owner
            folded = await self.catchup.catch_up(part.store)
            tp = await self._seek_decided(p, part.store)
            counts = await asyncio.to_thread(view_counts, part.store.kv)  # the gauges start from its views
        except BaseException:
            await stop_quietly(producer)
            raise
        if self._revocations[p] != revocations:
            # A rebalance took the partition while it was prepared (`release` found no decider to stop):
            # serving it now would answer reads from a store that its new owner no longer keeps current.
            await stop_quietly(producer)
            where = {"workerId": self.config.worker_id, "partition": p}
            log.info("partition revoked while it was prepared", extra=where)
            return False
        self.metrics.business.track(p, counts)
        part.decider = Decider(
            part.store, producer, self.topics, self.metrics, accel=self.config.kafka_accel, trimmer=self.trimmer
        )
        part.queue = []
        part.ready = True
        self.consumer.resume(tp)
        log.info("partition ready", extra={"workerId": self.config.worker_id, "partition": p, "folded": folded})
        return True

    def _owned(self, p: int) -> OwnedPartition:
        part = self.parts.get(p)
        if part is None:
            cfg = self.config
            store = PartitionStore(cfg.data_dir / f"p{p}", p, limits=cfg.limits, clock=cfg.clock, new_id=cfg.new_id)
            part = self.parts[p] = OwnedPartition(store)
        return part

    def _producer(self, p: int) -> Any:
        """Partition p's transactional producer (not started)."""
        return AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap, transactional_id=self.topics.transactional_id(p),
            enable_idempotence=True, acks="all", request_timeout_ms=10_000, linger_ms=0, retry_backoff_ms=5,
            max_request_size=8 << 20, transaction_timeout_ms=30_000, max_batch_size=1 << 20,
            **self.config.security.client_kwargs(),
        )  # fmt: skip

    async def _seek_decided(self, p: int, store: PartitionStore) -> TopicPartition:
        """Position the group consumer after the last command decided on partition p."""
        tp = TopicPartition(self.topics.commands, p)
        # The decided position moved in the transactions that appended the events just folded. A
        # consumer-group offset is where workers of earlier releases kept it, and later ones commit a
        # position already decided there for lag tools: the later of the two counts.
        positions = [await self.catchup.progress(p), await self.consumer.committed(tp)]
        committed = max((o for o in positions if o is not None), default=None)
        if committed is None:
            await self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, committed)
        store.mark_decided(-1 if committed is None else committed - 1)
        return tp
