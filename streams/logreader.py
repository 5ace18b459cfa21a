"""``handoff.events`` read from outside the workers (the audit tools), and the workers' view digests.

A `LogReader` owns a private event loop and a group-less ``read_committed`` consumer (the decider
appends in transactions: an aborted one must not count). Its iterators are plain generators, so the
audit tools check and fold a Kafka log with the same code that checks and folds the embedded store.
Each read goes from the beginning of a partition to the end offset taken when the read starts.

Records are read with plain Fetch requests (`fetch_committed`), not through aiokafka's consumer: its
fetcher turns every record into a `ConsumerRecord` on the way, which cost several times what a replay
spends reading the bytes. The read_committed rules are the consumer's: the broker answers up to the last
stable offset, control batches are skipped, and batches of aborted transactions are dropped.
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
from aiokafka import errors as Errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from streams.topics import Topics

T = TypeVar("T")

READ_COMMITTED = 1
FETCH_BYTES = 16 << 20  # per request: a replay reads whole partitions


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

    def __init__(self, bootstrap: str, prefix: str = "handoff") -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self._loop = asyncio.new_event_loop()
        self._consumer: Any = None
        self._client: Any = None
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
        self._client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=15_000)
        try:
            await self._client.bootstrap()
        except BaseException:
            await self._client.close()
            raise
        # Only asked for end offsets (read_committed: the last stable ones); records come from `fetch_committed`.
        # aiokafka clients are made inside the loop they run on.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", request_timeout_ms=15_000,
        )  # fmt: skip
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _partitions(self, topic: str) -> set[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=15_000)
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
        if self._client is not None:
            self.run(self._client.close())
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
        fetches = fetch_committed(self._client, TopicPartition(topic or self.topics.events, partition), 0, end)
        try:
            while (chunk := self.run(_next(fetches))) is not None:
                yield chunk
        finally:
            self.run(fetches.aclose())

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


async def fetch_committed(
    client: AIOKafkaClient, tp: TopicPartition, start: int, end: int, max_bytes: int = FETCH_BYTES
) -> AsyncGenerator[list[Any], None]:
    """The committed records of `tp` from offset `start` up to `end` (exclusive), a fetch response at a time.

    Each record has ``offset``, ``key``, ``value`` and ``headers``. `end` must not pass the last stable offset
    (take it from a read_committed ``end_offsets``), or this waits for it.
    """
    reading = _Committed(start, end)
    attempts = 0
    await client.add_topic(tp.topic)
    while reading.offset < end:
        node = client.cluster.leader_for_partition(tp)
        error: type[KafkaError] | None = Errors.NotLeaderForPartitionError
        if node is not None and node >= 0:
            request = FetchRequest(
                500, 1, max_bytes, READ_COMMITTED, [(tp.topic, [(tp.partition, reading.offset, max_bytes)])]
            )
            error, chunk = reading.take(await client.send(node, request))
        if error is not None:
            if not error.retriable or attempts >= 50:
                raise error(f"fetching {tp} at offset {reading.offset}")
            attempts += 1
            await client.force_metadata_update()
            await asyncio.sleep(0.1)
            continue
        attempts = 0
        if chunk:
            yield chunk


class _Committed:
    """What a read_committed consumer keeps of one partition's fetched batches, and where it stands."""

    def __init__(self, offset: int, end: int) -> None:
        self.offset, self.end = offset, end
        self.aborted_producers: set[int] = set()

    def take(self, response: Any) -> tuple[type[KafkaError] | None, list[Any]]:
        """The error of a fetch response, or its committed records below the end (moving the offset on)."""
        chunk: list[Any] = []
        for _, partitions in response.topics:
            for _, error_code, _, *data in partitions:
                error = Errors.for_code(error_code)
                if error is not Errors.NoError:
                    return error, []
                # v4: [lso, aborted, records]; v5+: [lso, log_start, aborted, (preferred replica,) records]
                aborted = sorted((data[1] if response.API_VERSION == 4 else data[2]) or [], key=lambda a: a[1])
                records = MemoryRecords(data[-1])
                while records.has_next():
                    batch = records.next_batch()
                    if batch is None:  # cut off at the end of the response: fetched again next time
                        break
                    if self._kept(batch, aborted):
                        if self.offset <= batch.base_offset and batch.next_offset <= self.end:
                            chunk.extend(batch)  # the whole batch lies inside the range: the usual case
                        else:
                            chunk.extend(r for r in batch if self.offset <= r.offset < self.end)
                    self.offset = batch.next_offset
        return None, chunk

    def _kept(self, batch: Any, aborted: list[Any]) -> bool:
        if batch.producer_id is None or batch.producer_id < 0:
            return not batch.is_control_batch
        while aborted and aborted[0][1] <= batch.base_offset:
            self.aborted_producers.add(aborted.pop(0)[0])
        if batch.is_control_batch:
            if ControlRecord.parse(next(batch).key) == ABORT_MARKER:
                self.aborted_producers.discard(batch.producer_id)
            return False
        return not (batch.is_transactional and batch.producer_id in self.aborted_producers)


async def _next(records: AsyncGenerator[list[Any], None]) -> list[Any] | None:
    return await anext(records, None)


def live_workers(urls: list[str], timeout: float = 3.0) -> list[str]:
    """The URLs whose worker answers its health check."""
    alive = []
    for url in urls:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:  # noqa: S310 - http only
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
            with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - http only
                answer = msgspec.msgpack.decode(resp.read())
        except (OSError, msgspec.DecodeError):
            continue
        for p, d in (answer.get("ok") or {}).items():
            found.setdefault(int(p), PartitionDigest(int(p), int(d["sum"], 16), int(d["applied"]), url))
    return found
