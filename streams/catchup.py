"""`LogCatchUp`: what preparing a partition reads from the log: the events to fold, and its decided position.

A partition is decided only once its store has loaded its data keys from ``handoff.keys`` and folded
``handoff.events`` to the end, and from the
position after the last command decided, which the last record of its ``handoff.progress``
partition holds. Both are read ``read_committed`` with clients of their own, never by moving the
group consumer.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka import errors as Errors
from aiokafka.structs import TopicPartition

from streams.fetch import fetch_committed, open_fetcher
from streams.metrics import WorkerMetrics
from streams.partition import EventRecord, PartitionStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from streams.worker import WorkerConfig

log = logging.getLogger("handoff.worker")
T = TypeVar("T")

CATCH_UP_REPORT_SECONDS = 10.0  # a partition catching up on a long log says how far it is this often


class InThread(Protocol):
    """Runs store work in a thread that the worker lets finish before it closes its stores."""

    async def __call__(self, work: Callable[..., T], *args: Any) -> T:
        """The result of `work(*args)`, computed in a thread."""


class LogCatchUp:
    """Folds a partition's store up to the end of the log, and finds the partition's decided position."""

    def __init__(self, config: WorkerConfig, metrics: WorkerMetrics, in_thread: InThread) -> None:
        self.config = config
        self.topics = config.topics
        self.metrics = metrics
        self._in_thread = in_thread
        self._events: Any = None  # only asked for offsets (read_committed: last stable offsets)
        self._fetching: Any = None  # reads handoff.events and handoff.progress

    async def start(self) -> None:
        """Connect."""
        cfg = self.config
        self._events = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed",
            **cfg.security.client_kwargs(),
        )  # fmt: skip
        await self._events.start()
        self._fetching = await open_fetcher(
            cfg.bootstrap, accel=cfg.kafka_accel, client_id=f"{cfg.worker_id}-prepare", security=cfg.security
        )

    async def close(self) -> None:
        """Disconnect."""
        if self._events is not None:
            await self._events.stop()
        if self._fetching is not None:
            await self._fetching.close()

    async def catch_up(self, store: PartitionStore) -> int:
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
            await self._in_thread(store.empty)
            self.metrics.rebuilds.inc()
        await self.load_keys(store)
        folded, start = 0, store.applied + 1
        report_at = time.monotonic() + CATCH_UP_REPORT_SECONDS
        async for chunk in fetch_committed(self._fetching, tp, start, end):
            records = [EventRecord(m.offset, m.value, {k: v.decode() for k, v in m.headers}) for m in chunk]
            applied = await self._in_thread(store.catch_up, records)
            self.metrics.folded.inc(applied)
            folded += applied
            if time.monotonic() >= report_at and chunk[-1].offset + 1 < end:
                done = round(100 * (chunk[-1].offset + 1 - start) / (end - start))
                extra = {"partition": store.partition, "folded": folded, "offset": chunk[-1].offset, "end": end}
                log.info("catching up on the log", extra={**extra, "percent": done})
                report_at = time.monotonic() + CATCH_UP_REPORT_SECONDS
        return folded

    async def load_keys(self, store: PartitionStore) -> int:
        """Load the partition's data keys that its store has not loaded yet, up to the end of ``handoff.keys``.

        Before the events are folded, so they fold in the clear (and an erased session, its key deleted by
        a tombstone, in the erased form). Its records were committed with their sessions' events; the keys
        of partition p are the keys of exactly the sessions of partition p.
        """
        tp = TopicPartition(self.topics.keys, store.partition)
        begin = (await self._events.beginning_offsets([tp]))[tp]  # compaction moves it
        end = (await self._events.end_offsets([tp]))[tp]  # read_committed: the last stable offset
        loaded = 0
        async for chunk in fetch_committed(self._fetching, tp, max(begin, store.keys_loaded + 1), end):
            records = [(m.offset, m.key, m.value) for m in chunk]
            loaded += await self._in_thread(store.load_keys, records)
        return loaded

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

    async def progress(self, p: int) -> int | None:
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
