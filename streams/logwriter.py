"""Appending an imported log to ``handoff.events``: each partition under that partition's transactional id.

The decider's rule is that partition p's events are only ever appended under the transactional id
of p (see `streams.decider`). The import keeps it: starting its producer fences any decider of p
still alive, whose next transaction then fails, so that decider prepares the partition again (reads
the log to its end, imported events included) before it decides anything. Nothing can decide on a
state that misses an imported event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaProducer

from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import Topics

CHUNK = 5_000  # events per transaction: small enough for the transaction timeout, large enough to be fast


async def publish_partition(
    bootstrap: str, topics: Topics, partition: int, records: Iterable[tuple[bytes, bytes]], *,
    security: KafkaSecurity = PLAINTEXT, keys: Mapping[bytes, bytes] | None = None,
) -> int:  # fmt: skip
    """Append (key, canonical record) pairs to one partition of the events topic, in order; returns how many.

    `keys` (sessionKey → data key) go to the same partition of ``handoff.keys`` in the first transaction, so
    no worker reads an imported encrypted event without its key (writing a key again is harmless).
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=topics.transactional_id(partition),
        enable_idempotence=True, acks="all", max_request_size=8 << 20, transaction_timeout_ms=120_000,
        linger_ms=5, **security.client_kwargs(),
    )  # fmt: skip
    await producer.start()
    count = 0
    try:
        pending: list[tuple[bytes, bytes]] = []
        data_keys = dict(keys or {})
        for pair in records:
            pending.append(pair)
            if len(pending) >= CHUNK:
                count += await _append(producer, topics, partition, pending, data_keys)
                pending, data_keys = [], {}
        if pending or data_keys:
            count += await _append(producer, topics, partition, pending, data_keys)
    finally:
        await producer.stop()
    return count


async def _append(
    producer: AIOKafkaProducer, topics: Topics, partition: int, pairs: list[tuple[bytes, bytes]],
    keys: Mapping[bytes, bytes],
) -> int:  # fmt: skip
    async with producer.transaction():
        for session, key in keys.items():
            await producer.send(topics.keys, key, key=session, partition=partition)
        for key, value in pairs:
            await producer.send(topics.events, value, key=key, partition=partition)
    return len(pairs)
