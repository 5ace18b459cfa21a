"""Reading a partition's committed records from one offset to another: a worker's catch-up, the audit tools.

Two fetchers give the same chunks (lists of records with ``offset``, ``key``, ``value``, ``headers``):
the public `ConsumerFetcher`, a group-less read_committed `AIOKafkaConsumer` per read, and the
accelerator `handoff.accel.kafka_fetch`, plain Fetch requests without a record object per record.
`open_fetcher` picks the accelerator when its gate allows.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from handoff.accel import gate
from streams.security import PLAINTEXT, KafkaSecurity

FETCH_BYTES = 16 << 20  # per request: a replay reads whole partitions
POLL_MS = 500


class Fetcher(Protocol):
    """Reads committed records of any partition."""

    def read(self, tp: TopicPartition, start: int, end: int, max_bytes: int) -> AsyncGenerator[list[Any], None]:
        """The committed records of `tp` in [start, end), a chunk at a time.

        `end` must not pass the last stable offset (take it from a read_committed ``end_offsets``), or
        this waits for it.
        """

    async def close(self) -> None:
        """Disconnect."""


class ConsumerFetcher:
    """`Fetcher` through aiokafka's public consumer: one group-less read_committed consumer per read."""

    def __init__(
        self, bootstrap: str, *, client_id: str | None = None, request_timeout_ms: int = 40_000,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.security = security
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms

    async def read(self, tp: TopicPartition, start: int, end: int, max_bytes: int) -> AsyncGenerator[list[Any], None]:
        """The committed records of `tp` in [start, end), a ``getmany`` at a time."""
        if start >= end:
            return
        kw: dict[str, Any] = {"client_id": self.client_id} if self.client_id else {}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="none", request_timeout_ms=self.request_timeout_ms,
            max_partition_fetch_bytes=max_bytes, fetch_max_bytes=max(max_bytes, 1 << 20), **kw,
            **self.security.client_kwargs(),
        )  # fmt: skip
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                fetched = await consumer.getmany(tp, timeout_ms=POLL_MS)
                chunk = [m for m in fetched.get(tp, ()) if m.offset < end]
                if chunk:
                    yield chunk
        finally:
            await consumer.stop()

    async def close(self) -> None:
        """Nothing to close: each read closes its consumer."""


async def open_fetcher(
    bootstrap: str, *, accel: bool = True, client_id: str | None = None, request_timeout_ms: int = 40_000,
    security: KafkaSecurity = PLAINTEXT,
) -> Fetcher:  # fmt: skip
    """The accelerator's fetcher when `accel` and its gate allow it (connected), else the public one."""
    if gate.enabled(gate.KAFKA_FETCH, accel):
        from handoff.accel.kafka_fetch import RawFetcher  # only now: it uses this aiokafka's internals

        return await RawFetcher.connect(
            bootstrap, client_id=client_id, request_timeout_ms=request_timeout_ms, **security.client_kwargs()
        )
    return ConsumerFetcher(bootstrap, client_id=client_id, request_timeout_ms=request_timeout_ms, security=security)


def fetch_committed(
    fetcher: Fetcher, tp: TopicPartition, start: int, end: int, max_bytes: int = FETCH_BYTES
) -> AsyncGenerator[list[Any], None]:
    """The committed records of `tp` in [start, end), a chunk at a time (see `Fetcher.read`)."""
    return fetcher.read(tp, start, end, max_bytes)
