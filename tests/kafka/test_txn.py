"""A decider's transaction: whole, in order, fenced; by hand (`handoff.accel.kafka_txn`) or by aiokafka's public API.

The hand-sent writer is also never reused after a failure; the public one commits the consumed
position as the group's offset inside the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.protocol.transaction import EndTxnRequest
from aiokafka.structs import TopicPartition

from handoff.accel.kafka_txn import TransactionalWriter
from kafka.support import Broker, read_topic
from streams.topics import Topics, ensure_topics
from streams.transactions import PublicTransactionalWriter
from streams.transactions import TransactionalWriter as Writer

pytestmark = pytest.mark.anyio
WRITERS = pytest.mark.parametrize(
    "writer_of", [TransactionalWriter, PublicTransactionalWriter], ids=["hand-sent", "public"]
)


async def _new_topics(bootstrap: str) -> Topics:
    """The project's topics under a new prefix: events has 2 partitions, deadletter 1."""
    topics = Topics(f"txn{uuid.uuid4().hex[:8]}", 2)
    await ensure_topics(bootstrap, topics)
    return topics


@asynccontextmanager
async def _producer(bootstrap: str, transactional_id: str) -> AsyncIterator[Any]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=transactional_id, enable_idempotence=True, acks="all",
        max_batch_size=16_384,  # small, so that one transaction needs several batches of one partition
    )  # fmt: skip
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@WRITERS
async def test_a_transaction_lands_whole_and_in_order_with_each_partitions_last_offset(
    broker: Broker, writer_of: Callable[[Any], Writer]
) -> None:
    topics = await _new_topics(broker.bootstrap)
    a, b = topics.events, topics.deadletter
    async with _producer(broker.bootstrap, f"t-{uuid.uuid4().hex}") as producer:
        writer = writer_of(producer)
        txn = writer.begin()
        for i in range(3):
            txn.append(a, 1, b"k", b"a%d" % i)
        txn.append(b, 0, None, b"b0", [("h", b"1")])
        assert await txn.commit() == {TopicPartition(a, 1): 2, TopicPartition(b, 0): 0}

        txn = writer.begin()
        for i in range(10):  # 50 KB: four batches of partition a[1], sent one after the other
            txn.append(a, 1, b"k", b"%d:" % i + b"x" * 5_000)
        assert await txn.commit() == {TopicPartition(a, 1): 13}  # offset 3 is the first one's commit marker

        for i in range(20):  # back to back: the coordinator's CONCURRENT_TRANSACTIONS is waited out, not raised
            txn = writer.begin()
            txn.append(b, 0, None, b"n%d" % i)
            assert await txn.commit() == {TopicPartition(b, 0): 2 + 2 * i}  # each after a commit marker

    records = await read_topic(broker.bootstrap, a, 2)
    assert [(r.partition, r.offset) for r in records] == [(1, o) for o in [0, 1, 2, *range(4, 14)]]
    assert [r.value[:4] for r in records] == [b"a0", b"a1", b"a2", *(b"%d:xx" % i for i in range(10))]
    headers = [r.headers for r in await read_topic(broker.bootstrap, b)]
    assert headers[0] == (("h", b"1"),) and len(headers) == 21


@WRITERS
async def test_a_fenced_writer_fails_and_what_it_sent_never_becomes_visible(
    broker: Broker, writer_of: Callable[[Any], Writer]
) -> None:
    topic = (await _new_topics(broker.bootstrap)).deadletter
    tid = f"t-{uuid.uuid4().hex}"
    async with _producer(broker.bootstrap, tid) as old:
        writer = writer_of(old)
        txn = writer.begin()
        txn.append(topic, 0, None, b"before")
        await txn.commit()
        async with _producer(broker.bootstrap, tid):  # a new owner: init_transactions fences the old producer
            txn = writer.begin()
            txn.append(topic, 0, None, b"zombie")
            with pytest.raises(KafkaError):
                await txn.commit()
    assert [r.value for r in await read_topic(broker.bootstrap, topic)] == [b"before"]


async def test_a_half_sent_transaction_stays_invisible_and_the_writer_refuses_more(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = (await _new_topics(broker.bootstrap)).deadletter
    tid = f"t-{uuid.uuid4().hex}"
    coordinated = TransactionalWriter._coordinated  # noqa: SLF001 - replaced to lose the EndTxn request

    async def lose_end_txn(self: TransactionalWriter, tid: str, request: Any, check: Any, deadline: float) -> None:
        if isinstance(request, EndTxnRequest):
            raise KafkaError("the connection dropped before EndTxn")
        await coordinated(self, tid, request, check, deadline)

    async with _producer(broker.bootstrap, tid) as producer:
        writer = TransactionalWriter(producer)
        monkeypatch.setattr(TransactionalWriter, "_coordinated", lose_end_txn)
        txn = writer.begin()
        txn.append(topic, 0, None, b"half")
        with pytest.raises(KafkaError):
            await txn.commit()  # produced, never committed
        monkeypatch.setattr(TransactionalWriter, "_coordinated", coordinated)
        txn = writer.begin()
        txn.append(topic, 0, None, b"again")
        with pytest.raises(KafkaError, match="earlier transaction"):
            await txn.commit()  # its sequence numbers are unknown now: only a new producer may go on
    async with _producer(broker.bootstrap, tid) as successor:  # its init_transactions aborts the open one
        txn = TransactionalWriter(successor).begin()
        txn.append(topic, 0, None, b"after")
        await txn.commit()
    assert [r.value for r in await read_topic(broker.bootstrap, topic)] == [b"after"]


async def _group_offset(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


async def test_the_public_writer_commits_the_consumed_position_with_the_records_or_not_at_all(broker: Broker) -> None:
    topics = await _new_topics(broker.bootstrap)
    source, group, tid = TopicPartition(topics.commands, 1), f"g-{uuid.uuid4().hex}", f"t-{uuid.uuid4().hex}"
    async with _producer(broker.bootstrap, tid) as producer:
        txn = PublicTransactionalWriter(producer).begin()
        txn.append(topics.events, 1, b"k", b"decided")
        txn.consumed(group, source, 7)
        await txn.commit()
        assert await _group_offset(broker.bootstrap, group, source) == 7
        async with _producer(broker.bootstrap, tid):  # fenced: neither the record nor the position may land
            txn = PublicTransactionalWriter(producer).begin()
            txn.append(topics.events, 1, b"k", b"zombie")
            txn.consumed(group, source, 9)
            with pytest.raises(KafkaError):
                await txn.commit()
    assert await _group_offset(broker.bootstrap, group, source) == 7
    assert [r.value for r in await read_topic(broker.bootstrap, topics.events, 2)] == [b"decided"]
