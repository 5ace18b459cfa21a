"""`Dispatcher`: the worker's deciding: polls ``handoff.commands`` and hands each partition's records to its decider.

Partitions decide concurrently (each has its own transactional producer), and while one transaction
commits, the records that arrive meanwhile queue up and go into the next one: under load a
transaction carries many commands, which is where the throughput comes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from aiokafka import errors as Errors
from aiokafka.structs import TopicPartition

from streams.decider import Incoming
from streams.lifecycle import OwnedPartition, Partitions
from streams.metrics import WorkerMetrics
from streams.records import decide_by

if TYPE_CHECKING:
    from streams.worker import WorkerConfig

log = logging.getLogger("handoff.worker")

# How often the decided positions are committed as the group's offsets: only for lag tools such as
# `kafka-consumer-groups.sh --describe`, since a worker takes its position from handoff.progress.
POSITIONS_COMMIT_SECONDS = 5.0


class Dispatcher:
    """The decide loop of one worker, over the partitions that `Partitions` has prepared."""

    def __init__(self, config: WorkerConfig, partitions: Partitions, metrics: WorkerMetrics) -> None:
        self.config = config
        self.partitions = partitions
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max(1, config.transactions))  # transactions open at once
        self._task: asyncio.Task[None] | None = None  # the loop
        self._positions: asyncio.Task[None] | None = None  # committing the decided positions as group offsets
        self._tasks: set[asyncio.Task[None]] = set()  # the partitions' deciding tasks

    def start(self) -> None:
        """Start the decide loop."""
        self._task = asyncio.create_task(self._run(), name="handoff-decider")

    async def stop(self) -> None:
        """Stop polling (the partitions' deciding tasks end once their partition is released: `drain`)."""
        for task in (self._task, self._positions):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def drain(self) -> None:
        """Wait for the deciding tasks, which end once their partition is released."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        """Poll commands and hand each partition's records to that partition's deciding task."""
        partitions, consumer = self.partitions, self.partitions.consumer
        commit_at = time.monotonic() + POSITIONS_COMMIT_SECONDS
        while True:
            await partitions.prepare_pending()
            if time.monotonic() >= commit_at and (self._positions is None or self._positions.done()):
                self._positions = asyncio.create_task(self._commit_positions(), name="handoff-positions")
                commit_at = time.monotonic() + POSITIONS_COMMIT_SECONDS
            while sum(len(part.queue) for part in partitions.parts.values()) > self.config.max_queued:
                await asyncio.sleep(0.001)  # backpressure: the deciders are behind
            data = await consumer.getmany(timeout_ms=50, max_records=self.config.max_batch)
            for tp, messages in data.items():
                part = partitions.parts.get(tp.partition)
                if part is None or not part.ready or part.decider is None or tp.partition in partitions.pending:
                    continue  # re-read from the committed offset once prepared
                part.queue.extend(Incoming(m.offset, m.value, decide_by(m.headers)) for m in messages)
                if part.task is None or part.task.done():
                    part.task = asyncio.create_task(self._decide(tp.partition, part), name=f"decide-{tp.partition}")
                    part.task.add_done_callback(self._tasks.discard)
                    self._tasks.add(part.task)

    async def _decide(self, p: int, part: OwnedPartition) -> None:
        """Decide what is queued for a partition, one transaction per round, until the queue is empty."""
        decider = part.decider
        max_batch = self.config.max_batch
        while part.queue and decider is not None and part.decider is decider and part.ready:
            try:
                async with self._slots:  # what arrives while waiting for a slot joins this batch
                    records, part.queue = part.queue[:max_batch], part.queue[max_batch:]
                    async with decider.lock:
                        if records and part.decider is decider and part.ready:
                            await decider.process(records)
            except Exception:
                self.metrics.failures.inc()
                log.exception("deciding failed; preparing the partition again", extra={"partition": p})
                await self.partitions.unready(p)
                return

    async def _commit_positions(self) -> None:
        """Commit each ready partition's decided position as the group's offset, for lag tools.

        Never ahead of ``handoff.progress`` (it is read from a store after its transaction committed),
        so preparing a partition, which takes the later of the two, still starts from the progress record.
        """
        offsets = {
            TopicPartition(self.partitions.topics.commands, p): decided + 1
            for p, part in list(self.partitions.parts.items())
            if part.ready and (decided := part.store.decided) >= 0
        }
        if not offsets:
            return
        try:
            await self.partitions.consumer.commit(offsets)
        except Errors.KafkaError as exc:  # a rebalance moved partitions meanwhile, or the broker is away
            log.debug("committing decided positions as group offsets failed", extra={"error": repr(exc)})
        except Exception:
            log.warning("committing decided positions as group offsets failed", exc_info=True)
