"""Committed records of a partition read with plain Fetch requests, not through aiokafka's consumer.

The consumer's fetcher turns every record into a `ConsumerRecord` on the way, which cost several
times what a replay spends reading the bytes. The read_committed rules are the consumer's: the
broker answers up to the last stable offset, control batches are skipped, and batches of aborted
transactions are dropped.

An accelerator: it sends protocol requests through aiokafka's internal `AIOKafkaClient` and parses
record batches with its internal record classes. Its public counterpart is
`streams.fetch.ConsumerFetcher`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from aiokafka import errors as Errors
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

READ_COMMITTED = 1


class RawFetcher:
    """Reads committed records over one client connection of its own."""

    def __init__(self, client: AIOKafkaClient) -> None:
        self.client = client

    @classmethod
    async def connect(
        cls, bootstrap: str, *, client_id: str | None = None, request_timeout_ms: int = 40_000, **security: Any
    ) -> RawFetcher:
        """A connected fetcher; `security` is `streams.security.KafkaSecurity.client_kwargs()`."""
        kw: dict[str, Any] = {"client_id": client_id} if client_id else {}
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms, **kw, **security)
        try:
            await client.bootstrap()
        except BaseException:
            await client.close()
            raise
        return cls(client)

    def read(self, tp: TopicPartition, start: int, end: int, max_bytes: int) -> AsyncGenerator[list[Any], None]:
        """The committed records of `tp` in [start, end), a fetch response at a time."""
        return fetch_committed(self.client, tp, start, end, max_bytes)

    async def close(self) -> None:
        """Disconnect."""
        await self.client.close()


async def fetch_committed(
    client: AIOKafkaClient, tp: TopicPartition, start: int, end: int, max_bytes: int
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
