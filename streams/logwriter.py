"""Appending an imported log to ``handoff.events``: each partition under that partition's transactional id.

The decider's rule is that partition p's events are only ever appended under the transactional id
of p (see `streams.decider`). The import keeps it: starting its producer fences any decider of p
still alive, whose next transaction then fails, so that decider prepares the partition again (reads
the log to its end, imported events included) before it decides anything. Nothing can decide on a
state that misses an imported event.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer

from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import Topics

CHUNK = 5_000  # events per transaction: small enough for the transaction timeout, large enough to be fast


async def publish_partition(
    bootstrap: str, topics: Topics, partition: int, records: Iterable[tuple[bytes, bytes]], *,
    security: KafkaSecurity = PLAINTEXT,
) -> int:  # fmt: skip
    """Append (key, canonical record) pairs to one partition of the events topic, in order; returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=topics.transactional_id(partition),
        enable_idempotence=True, acks="all", max_request_size=8 << 20, transaction_timeout_ms=120_000,
        linger_ms=5, **security.client_kwargs(),
    )  # fmt: skip
    await producer.start()
    count = 0
    try:
        pending: list[tuple[bytes, bytes]] = []
        for pair in records:
            pending.append(pair)
            if len(pending) >= CHUNK:
                count += await _append(producer, topics.events, partition, pending)
                pending = []
        if pending:
            count += await _append(producer, topics.events, partition, pending)
    finally:
        await producer.stop()
    return count


async def _append(producer: AIOKafkaProducer, topic: str, partition: int, pairs: list[tuple[bytes, bytes]]) -> int:
    async with producer.transaction():
        for key, value in pairs:
            await producer.send(topic, value, key=key, partition=partition)
    return len(pairs)
