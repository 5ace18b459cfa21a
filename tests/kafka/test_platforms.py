"""Platforms produce command records directly: poison records are dead-lettered and the next is decided."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.errors import Unavailable
from kafka.support import Broker, produce, read_topic, running_worker, until_version, wait_until
from streams.client import KafkaService
from streams.records import CommandRecord, command_record_schema, decide_by_header, encode_command
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
    poison = [(b"{not json", []), (b'{"commandId":"x","command":{"command":"Nope"}}', [])]
    await produce(broker.bootstrap, topics.commands, key, *poison, (good, []))
    await until_version(service, key, 2, "the good record after the poison ones to be decided")
    entries, _ = await service.context(key, 0, 10)
    assert entries[-1].content == "next"
    dead = [m for m in await read_topic(broker.bootstrap, topics.deadletter) if m.value in (b"{not json",
            b'{"commandId":"x","command":{"command":"Nope"}}')]  # fmt: skip
    assert len(dead) == 2
    reasons = [dict(m.headers)["reason"].decode() for m in dead]
    assert all(r.startswith("undecodable command record") for r in reasons), reasons


async def test_a_record_past_its_decide_by_header_is_not_decided_and_is_dead_lettered(
    service: KafkaService, broker: Broker, topics: Topics
) -> None:
    key = f"s-{uuid.uuid4().hex[:8]}"
    await service.submit(RegisterSession(session_key=key, agent_from="a"))

    def record(content: str) -> bytes:
        command = AppendContext(session_key=key, context_type="message", content=content)
        return encode_command(CommandRecord(command_id=uuid.uuid4().hex, command=command))

    late = record("too late")
    await produce(
        broker.bootstrap, topics.commands, key,
        (late, [decide_by_header(1.0)]),
        (record("in time"), [decide_by_header(time.time() + 60)]),
        (record("no deadline"), []),
    )  # fmt: skip
    await until_version(service, key, 3, "the records in time and without a deadline to be decided")
    entries, _ = await service.context(key, 0, 10)
    assert [e.content for e in entries[1:]] == ["in time", "no deadline"]
    dead = [m for m in await read_topic(broker.bootstrap, topics.deadletter) if m.value == late]
    assert len(dead) == 1 and dict(dead[0].headers)["reason"].decode().startswith("UNAVAILABLE: ")


async def test_a_call_answered_unavailable_never_takes_effect_afterwards(broker: Broker, tmp_path: Path) -> None:
    topics = Topics(f"u{uuid.uuid4().hex[:8]}", 2)
    svc = KafkaService(broker.bootstrap, topics=topics, timeout=2.0)
    await svc.start()
    try:
        key = f"s-{uuid.uuid4().hex[:8]}"
        with pytest.raises(Unavailable) as refused:  # no worker yet: the command waits in handoff.commands
            await svc.submit(RegisterSession(session_key=key, agent_from="first"))
        assert f"no worker has announced itself on {topics.workers}" in refused.value.message
        assert f"handoff worker --kafka {broker.bootstrap}" in refused.value.message
        async with running_worker(broker.bootstrap, topics, tmp_path / "w"):  # it drains that backlog
            await wait_until(svc.ready, 60, "the worker to take every partition")
            assert await svc.session(key) is None  # the refused call wrote nothing, then or now
            again = await svc.submit(RegisterSession(session_key=key, agent_from="retry"))
            assert again.envelope.version == 1 and again.envelope.actor == "retry"
    finally:
        await svc.stop()


def test_the_command_record_schema_is_published() -> None:
    schema = command_record_schema()
    assert schema["required"] == ["commandId", "command"]
    assert "AppendContext" in str(schema["$defs"])
