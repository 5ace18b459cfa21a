"""Workers delete decided command records (streams.trimming), never an undecided one, and a new owner resumes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from handoff.kernel.commands import AppendContext, RegisterSession
from kafka.support import Broker, read_topic, running_service, running_worker, wait_until
from streams.records import CommandRecord, encode_command
from streams.topics import Topics

pytestmark = pytest.mark.anyio


def _topics() -> Topics:
    return Topics(f"t{uuid.uuid4().hex[:8]}", 2)


async def _bounds(bootstrap: str, tp: TopicPartition) -> tuple[int, int]:
    """The partition's log start offset and end offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def _send(bootstrap: str, topics: Topics, key: str, *contents: str) -> None:
    """Fire-and-forget command records, as a platform sends them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for content in contents:
            command = AppendContext(session_key=key, context_type="message", content=content)
            record = encode_command(CommandRecord(command_id=uuid.uuid4().hex, command=command))
            await producer.send_and_wait(topics.commands, record, key=key.encode(), partition=topics.partition_for(key))
    finally:
        await producer.stop()


@pytest.mark.parametrize("accel", [True, False], ids=["accelerated", "public"])  # both transaction paths
async def test_decided_command_records_are_deleted_and_undecided_ones_survive(
    broker: Broker, tmp_path: Path, accel: bool
) -> None:
    topics = _topics()
    async with running_worker(broker.bootstrap, topics, tmp_path / "w", kafka_accel=accel, trim_every=3600) as worker:
        async with running_service(broker.bootstrap, topics) as svc:
            await svc.submit(RegisterSession(session_key="k", agent_from="a"))
        p = topics.partition_for("k")
        tp = TopicPartition(topics.commands, p)
        await worker.trimmer.trim()
        assert await _bounds(broker.bootstrap, tp) == (1, 1)  # the one decided record is gone

        part = worker.parts[p]
        assert part.decider is not None
        async with part.decider.lock:  # the partition's decider cannot decide what arrives now
            await _send(broker.bootstrap, topics, "k", "undecided one", "undecided two")
            assert await worker.trimmer.trim() == 0  # nothing decided since the last deletion
            assert await _bounds(broker.bootstrap, tp) == (1, 3)
            kept = [m.value for m in await read_topic(broker.bootstrap, topics.commands, topics.partitions)]
            assert sum(b"undecided" in value for value in kept) == 2

        async def decided() -> bool:
            return part.store.decided == 2

        await wait_until(decided, 15, "the two records to be decided once the decider is free")
        assert await worker.trimmer.trim() == 1
        assert await _bounds(broker.bootstrap, tp) == (3, 3)


async def test_timed_rounds_delete_decided_records_and_a_new_owner_resumes_after_them(
    broker: Broker, tmp_path: Path
) -> None:
    topics = _topics()
    tp = TopicPartition(topics.commands, topics.partition_for("k"))
    async with running_worker(broker.bootstrap, topics, tmp_path / "a", trim_every=0.2):
        async with running_service(broker.bootstrap, topics) as svc:
            await svc.submit(RegisterSession(session_key="k", agent_from="a"))
            await svc.submit(AppendContext(session_key="k", context_type="message", content="first"))

            async def trimmed() -> bool:
                start, end = await _bounds(broker.bootstrap, tp)
                return start == end == 2

            await wait_until(trimmed, 15, "a timed round to delete the two decided records")
    await _send(broker.bootstrap, topics, "k", "while no worker ran")  # offset 2: undecided, kept
    assert await _bounds(broker.bootstrap, tp) == (2, 3)
    async with running_worker(broker.bootstrap, topics, tmp_path / "b", trim_every=0.2):
        async with running_service(broker.bootstrap, topics) as svc:

            async def resumed() -> bool:
                entries, _ = await svc.context("k", 0, 100)
                return [e.content for e in entries if e.context_type == "message"] == ["first", "while no worker ran"]

            await wait_until(resumed, 15, "the new owner to decide the record left, after the deleted ones")

            async def trimmed_again() -> bool:
                return await _bounds(broker.bootstrap, tp) == (3, 3)

            await wait_until(trimmed_again, 15, "the new owner to delete what it decided")
