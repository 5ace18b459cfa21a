"""The audit tools' reader of a topic keeps exactly what a read_committed consumer keeps, on both paths.

Accelerated: plain Fetch requests (`handoff.accel.kafka_fetch`); public: the consumer itself.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from kafka.support import Broker, read_topic
from streams.fetch import fetch_committed
from streams.logreader import LogReader
from streams.topics import Topics, ensure_topics

ACCEL = pytest.mark.parametrize("accel", [True, False], ids=["accelerated", "public"])


async def _mixed_log(bootstrap: str, topics: Topics) -> list[bytes]:
    """Committed, aborted and non-transactional batches interleaved on events partition 0; the values to keep."""
    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topics.prefix}-t", enable_idempotence=True)
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await txn.start()
    await plain.start()
    kept: list[bytes] = []
    try:
        for round_ in range(6):
            commit = round_ % 3 != 1
            await txn.begin_transaction()
            for i in range(50):
                value = b"r%d-%d-" % (round_, i) + b"x" * 300
                await txn.send(topics.events, value, key=b"k", partition=0)
                if commit:
                    kept.append(value)
            await (txn.commit_transaction() if commit else txn.abort_transaction())
            value = b"plain-%d" % round_
            await plain.send_and_wait(topics.events, value, key=b"k", partition=0)
            kept.append(value)
    finally:
        await txn.stop()
        await plain.stop()
    return kept


def _fetched(reader: LogReader, topic: str, start: int, end: int, max_bytes: int) -> list[tuple[int, bytes]]:
    async def read() -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        assert reader.fetcher is not None
        async for chunk in fetch_committed(reader.fetcher, TopicPartition(topic, 0), start, end, max_bytes):
            out.extend((r.offset, r.value) for r in chunk)
        return out

    return reader.run(read())


@ACCEL
def test_the_reader_keeps_committed_and_plain_records_and_drops_aborted_ones(broker: Broker, accel: bool) -> None:
    topics = Topics(f"lr{uuid.uuid4().hex[:8]}", 1)
    asyncio.run(ensure_topics(broker.bootstrap, topics))
    kept = asyncio.run(_mixed_log(broker.bootstrap, topics))
    assert [m.value for m in asyncio.run(read_topic(broker.bootstrap, topics.events))] == kept  # the consumer agrees

    with LogReader(broker.bootstrap, topics.prefix, accel=accel) as reader:
        end = reader.end_offsets()[0]
        records = list(reader.records(0, end))
        assert [r.value for r in records] == kept
        offsets = [r.offset for r in records]
        assert offsets == sorted(set(offsets))
        middle = offsets[len(offsets) // 2]
        assert [r.offset for r in reader.records(0, middle)] == [o for o in offsets if o < middle]
        # responses that cut batches off (a batch is then fetched again from where the read stands)
        assert [v for _, v in _fetched(reader, topics.events, 0, end, 200)] == kept


@ACCEL
@pytest.mark.parametrize("start", [0, 7, 60, 170])
def test_a_read_can_start_inside_a_batch_or_an_aborted_transaction(broker: Broker, start: int, accel: bool) -> None:
    topics = Topics(f"lr{uuid.uuid4().hex[:8]}", 1)
    asyncio.run(ensure_topics(broker.bootstrap, topics))
    asyncio.run(_mixed_log(broker.bootstrap, topics))
    with LogReader(broker.bootstrap, topics.prefix, accel=accel) as reader:
        end = reader.end_offsets()[0]
        everything = [(r.offset, r.value) for r in reader.records(0, end)]
        assert _fetched(reader, topics.events, start, end, 1 << 20) == [(o, v) for o, v in everything if o >= start]
