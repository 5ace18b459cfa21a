"""``handoff.events`` read from outside the workers (the audit tools), and the workers' view digests.

A `LogReader` owns a private event loop and a group-less ``read_committed`` consumer (the decider
appends in transactions: an aborted one must not count). Its iterators are plain generators, so the
audit tools check and fold a Kafka log with the same code that checks and folds the embedded store.
Each read goes from the beginning of a partition to the end offset taken when the read starts.

Records come from a `streams.fetch` fetcher: plain Fetch requests (an accelerator) unless it is
switched off (``accel=False``) or its gate refuses, then the public consumer.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncGenerator, Coroutine, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.fetch import Fetcher, fetch_committed, open_fetcher
from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import Topics

T = TypeVar("T")


@dataclass(frozen=True)
class LogRecord:
    """One record of ``handoff.events`` as stored: where it sits, its key, and its value."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @property
    def where(self) -> str:
        """The record's place, for a human."""
        return f"partition {self.partition} offset {self.offset}"


@dataclass(frozen=True)
class PartitionDigest:
    """What a worker says of one partition's views: the partial digest and the event offset it reflects."""

    partition: int
    total: int
    applied: int
    url: str


class LogReader:
    """Synchronous reads of a deployment's topics (one per audit command; close it, or use ``with``)."""

    def __init__(
        self, bootstrap: str, prefix: str = "handoff", *, accel: bool = True, security: KafkaSecurity = PLAINTEXT
    ) -> None:
        """`accel=False` (``HANDOFF_KAFKA_ACCEL=0``): records through the public consumer only."""
        self.bootstrap = bootstrap
        self.security = security
        self.prefix = prefix
        self.accel = accel
        self._loop = asyncio.new_event_loop()
        self._consumer: Any = None
        self.fetcher: Fetcher | None = None
        self.topics = Topics(prefix)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the reader's loop (the consumer's fetches make progress only meanwhile)."""
        try:
            return self._loop.run_until_complete(work)
        except KafkaError as exc:  # the audit tools report an unreachable log as an OSError, in one line
            raise ConnectionError(f"Kafka at {self.bootstrap}: {type(exc).__name__}: {exc}") from exc

    def open(self, *, missing_ok: bool = False) -> Topics:
        """Connect; the topics with the events topic's real partition count.

        FileNotFoundError if the events topic does not exist, unless `missing_ok` (then it has 0 partitions).
        """
        if self._consumer is None:
            self._consumer = self.run(self._connect())
        parts = self.run(self._partitions(self.topics.events))
        if not parts and not missing_ok:
            raise FileNotFoundError(f"no topic {self.topics.events} at {self.bootstrap}")
        self.topics = Topics(self.prefix, len(parts))
        return self.topics

    async def _connect(self) -> Any:
        self.fetcher = await open_fetcher(
            self.bootstrap, accel=self.accel, request_timeout_ms=15_000, security=self.security
        )
        # Only asked for end offsets (read_committed: the last stable ones); records come from `fetch_committed`.
        # aiokafka clients are made inside the loop they run on.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", request_timeout_ms=15_000, **self.security.client_kwargs(),
        )  # fmt: skip
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _partitions(self, topic: str) -> set[int]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=15_000, **self.security.client_kwargs()
        )
        await admin.start()
        try:
            if topic not in await admin.list_topics():  # describing a missing topic could auto-create it
                return set()
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        return {int(p["partition"]) for d in described if d["topic"] == topic for p in d.get("partitions") or []}

    def close(self) -> None:
        """Disconnect and close the loop."""
        if self._consumer is not None:
            self.run(self._consumer.stop())
        if self.fetcher is not None:
            self.run(self.fetcher.close())
        self._loop.close()

    def __enter__(self) -> LogReader:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def end_offsets(self, topic: str | None = None) -> dict[int, int]:
        """The current end (the last stable offset, read_committed) of every partition of a topic."""
        topic = topic or self.topics.events
        n = self.topics.partitions if topic == self.topics.events else len(self.run(self._partitions(topic)))
        tps = [TopicPartition(topic, p) for p in range(n)]
        ends = self.run(self._consumer.end_offsets(tps))
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def records(self, partition: int, end: int, topic: str | None = None) -> Iterator[LogRecord]:
        """Every committed record of a partition, in offset order, up to `end` (exclusive)."""
        for chunk in self._chunks(partition, end, topic):
            for m in chunk:
                yield LogRecord(partition, m.offset, m.key, m.value)

    def values(self, partition: int, end: int) -> Iterator[bytes]:
        """The values of `records` of the events topic, without a record object around each."""
        for chunk in self._chunks(partition, end, None):
            yield from (m.value for m in chunk)

    def _chunks(self, partition: int, end: int, topic: str | None) -> Iterator[list[Any]]:
        """The fetched records of a partition up to `end`, a fetch response at a time."""
        assert self.fetcher is not None, "open the reader first"
        fetches = fetch_committed(self.fetcher, TopicPartition(topic or self.topics.events, partition), 0, end)
        try:
            while (chunk := self.run(_next(fetches))) is not None:
                yield chunk
        finally:
            self.run(fetches.aclose())

    def data_keys(self, session: str | None = None) -> dict[str, bytes]:
        """The live data keys of ``handoff.keys`` (sessionKey → key; a tombstone removes its session's key).

        Of one session's partition with `session`. None for a deployment from before the keys topic: its
        sessions were written in the clear.
        """
        topic = self.topics.keys
        ends = self.end_offsets(topic)
        parts = [self.topics.partition_for(session)] if session is not None and ends else sorted(ends)
        keys: dict[str, bytes] = {}
        for p in parts:
            for rec in self.records(p, ends[p], topic):
                if rec.key is None:
                    continue
                name = rec.key.decode()
                if rec.value is None:
                    keys.pop(name, None)
                elif session is None or name == session:
                    keys[name] = rec.value
        return keys

    def worker_urls(self) -> list[str]:
        """The query URLs announced on ``handoff.workers`` (some may belong to workers that are gone)."""
        urls: dict[bytes, str] = {}
        topic = self.topics.workers
        ends = self.end_offsets(topic)
        for p, end in ends.items():
            for rec in self.records(p, end, topic):
                if rec.key is None:
                    continue
                if rec.value is None:
                    urls.pop(rec.key, None)
                else:
                    urls[rec.key] = json.loads(rec.value)["url"]
        return sorted(set(urls.values()))


async def _next(records: AsyncGenerator[list[Any], None]) -> list[Any] | None:
    return await anext(records, None)


def live_workers(urls: list[str], timeout: float = 3.0) -> list[str]:
    """The URLs whose worker answers its health check."""
    alive = []
    for url in urls:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:  # http only
                json.load(resp)
        except (OSError, ValueError):
            continue
        alive.append(url)
    return alive


def view_digests(
    urls: list[str], prefixes: tuple[bytes, ...] | None = None, timeout: float = 120.0
) -> dict[int, PartitionDigest]:
    """Each ready partition's view digest, from whichever live worker answers for it."""
    body = msgspec.msgpack.encode({"op": "digest", "prefixes": list(prefixes) if prefixes else None})
    found: dict[int, PartitionDigest] = {}
    for url in urls:
        request = urllib.request.Request(
            f"{url}/q", data=body, method="POST", headers={"Content-Type": "application/msgpack"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:  # http only
                answer = msgspec.msgpack.decode(resp.read())
        except (OSError, msgspec.DecodeError):
            continue
        for p, d in (answer.get("ok") or {}).items():
            found.setdefault(int(p), PartitionDigest(int(p), int(d["sum"], 16), int(d["applied"]), url))
    return found
