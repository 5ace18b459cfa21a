"""Platforms produce command records directly: poison records are dead-lettered and the next is decided."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from handoff.kernel.commands import AppendContext, RegisterSession
from kafka.support import Broker, read_topic, wait_until
from streams.client import KafkaService
from streams.records import CommandRecord, command_record_schema, encode_command
from streams.topics import Topics

pytestmark = pytest.mark.anyio


async def test_a_poison_record_lands_in_the_dead_letter_topic_and_the_next_record_is_decided(
    service: KafkaService, broker: Broker, topics: Topics
) -> None:
    key = f"s-{uuid.uuid4().hex[:8]}"
    await service.submit(RegisterSession(session_key=key, agent_from="a"))
    good = encode_command(CommandRecord(
        command_id=uuid.uuid4().hex, command=AppendContext(session_key=key, context_type="message", content="next"),
    ))  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.commands, b"{not json", key=key.encode())
        await producer.send_and_wait(
            topics.commands, b'{"commandId":"x","command":{"command":"Nope"}}', key=key.encode()
        )
        await producer.send_and_wait(topics.commands, good, key=key.encode())
    finally:
        await producer.stop()

    async def decided() -> bool:
        return (await service.session(key)).version == 2  # type: ignore[union-attr]

    await wait_until(decided, 30, "the good record after the poison ones to be decided")
    entries, _ = await service.context(key, 0, 10)
    assert entries[-1].content == "next"
    dead = [m for m in await read_topic(broker.bootstrap, topics.deadletter) if m.value in (b"{not json",
            b'{"commandId":"x","command":{"command":"Nope"}}')]  # fmt: skip
    assert len(dead) == 2
    reasons = [dict(m.headers)["reason"].decode() for m in dead]
    assert all(r.startswith("undecodable command record") for r in reasons), reasons


def test_the_command_record_schema_is_published() -> None:
    schema = command_record_schema()
    assert schema["required"] == ["commandId", "command"]
    assert "AppendContext" in str(schema["$defs"])
