"""Issue 2's lifecycle and concurrency scenarios through the ports, against KafkaService and one worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from handoff.kernel import errors as E
from handoff.kernel.codec import decode_envelope
from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    CancelHandoff,
    CloseSession,
    Command,
    CompleteHandoff,
    RegisterSession,
    RejectHandoff,
    RequestHandoff,
)
from handoff.kernel.events import HandoffRequested
from handoff.ports import Outcome
from kafka.support import Broker, produce, read_topic, wait_until
from streams.client import KafkaService
from streams.partition import dedupe_key
from streams.records import CommandRecord, Reply, decode_reply, encode_command
from streams.topics import Topics
from streams.worker import Worker

pytestmark = pytest.mark.anyio


def uid() -> str:
    return uuid.uuid4().hex[:8]


async def attempt(svc: KafkaService, command: Command) -> Outcome | E.HandoffError:
    try:
        return await svc.submit(command)
    except E.HandoffError as exc:
        return exc


def codes(results: list[Outcome | E.HandoffError]) -> list[str]:
    return sorted("OK" if isinstance(r, Outcome) else r.code for r in results)


async def request(svc: KafkaService, key: str, target: str = "b", kind: str = "context_transfer") -> str:
    out = await svc.submit(RequestHandoff(session_key=key, target_agent=target, request_type=kind))  # type: ignore[arg-type]
    assert isinstance(out.envelope.event, HandoffRequested)
    return out.envelope.event.handoff_id


async def test_a_handoff_goes_from_request_to_completion_and_every_read_sees_it(service: KafkaService) -> None:
    key = f"s-{uid()}"
    reg = await service.submit(RegisterSession(session_key=key, agent_from="a"))
    assert (reg.envelope.version, reg.receipt.session.status) == (1, "active")
    for i in range(3):
        out = await service.submit(AppendContext(session_key=key, context_type="message", content=f"m{i}"))
        assert out.envelope.version == i + 2
    hid = await request(service, key)
    handoff = await service.handoff(hid)
    assert handoff is not None and handoff.status == "pending" and handoff.package.to_sequence == 4
    entries = await service.package_entries(handoff)
    assert [e.content for e in entries][-1] == "m2"
    await service.submit(AcceptHandoff(session_key=key, handoff_id=hid, agent="b"))
    done = await service.submit(CompleteHandoff(session_key=key, handoff_id=hid, agent="b", result={"ok": True}))
    assert done.receipt.handoff is not None and done.receipt.handoff.status == "completed"
    session = await service.session(key)
    assert session is not None and session.version == 7 and session.status == "active"
    assert (await service.session(key, as_of=2)).version == 2  # type: ignore[union-attr]
    page, nxt = await service.context(key, 0, 2)
    assert [e.sequence_number for e in page] == [1, 2] and nxt == 2
    summary = await service.summary(key)
    assert summary is not None
    inbox = await service.list_handoffs("b", None, None, 10, None)
    assert [h.handoff_id for h in inbox.items] == [hid]


async def test_a_completed_full_handoff_completes_the_session_and_rejects_and_cancels_work(
    service: KafkaService,
) -> None:
    key = f"s-{uid()}"
    await service.submit(RegisterSession(session_key=key, agent_from="a"))
    rejected = await request(service, key)
    await service.submit(RejectHandoff(session_key=key, handoff_id=rejected, agent="b", reason="busy"))
    cancelled = await request(service, key, target="c")
    await service.submit(CancelHandoff(session_key=key, handoff_id=cancelled, agent="a"))
    full = await request(service, key, kind="full_handoff")
    await service.submit(AcceptHandoff(session_key=key, handoff_id=full, agent="b"))
    await service.submit(CompleteHandoff(session_key=key, handoff_id=full, agent="b"))
    statuses = {hid: (await service.handoff(hid)).status for hid in (rejected, cancelled, full)}  # type: ignore[union-attr]
    assert statuses == {rejected: "rejected", cancelled: "cancelled", full: "completed"}
    assert (await service.session(key)).status == "completed"  # type: ignore[union-attr]
    refused = await attempt(service, AppendContext(session_key=key, context_type="message", content="late"))
    assert isinstance(refused, E.SessionNotActive)


async def test_refusals_carry_their_contract_codes(service: KafkaService) -> None:
    key = f"s-{uid()}"
    assert isinstance(await attempt(service, AppendContext(session_key=key, context_type="task", content="x")),
                      E.SessionNotFound)  # fmt: skip
    await service.submit(RegisterSession(session_key=key, agent_from="a"))
    assert isinstance(await attempt(service, RegisterSession(session_key=key, agent_from="a")), E.SessionExists)
    stale = AppendContext(session_key=key, context_type="message", content="x", expected_version=7)
    assert isinstance(await attempt(service, stale), E.VersionConflict)
    close = CloseSession(session_key=key, agent="stranger")
    assert isinstance(await attempt(service, close), E.NotPermitted)
    missing = AcceptHandoff(session_key=key, handoff_id="nope", agent="b")
    assert isinstance(await attempt(service, missing), E.HandoffNotFound)
    assert (await service.session(key)).version == 1  # type: ignore[union-attr]


async def test_fifty_concurrent_updates_get_fifty_distinct_gap_free_sequence_numbers(service: KafkaService) -> None:
    key = f"s-{uid()}"
    await service.submit(RegisterSession(session_key=key, agent_from="a"))
    results = await asyncio.gather(
        *(attempt(service, AppendContext(session_key=key, context_type="message", content=f"w{i}")) for i in range(50))
    )
    assert codes(results) == ["OK"] * 50
    numbers = sorted(r.envelope.event.sequence_number for r in results)  # type: ignore[union-attr]
    assert numbers == list(range(2, 52))
    entries, _ = await service.context(key, 0, 100)
    assert [e.sequence_number for e in entries] == list(range(1, 52))


async def test_twenty_concurrent_registrations_of_one_key_have_exactly_one_winner(service: KafkaService) -> None:
    key = f"s-{uid()}"
    results = await asyncio.gather(
        *(attempt(service, RegisterSession(session_key=key, agent_from=f"r{i}")) for i in range(20))
    )
    assert codes(results) == ["OK"] + ["SESSION_EXISTS"] * 19
    assert (await service.session(key)).version == 1  # type: ignore[union-attr]


async def test_ten_concurrent_accepts_of_one_handoff_have_exactly_one_winner(service: KafkaService) -> None:
    key = f"s-{uid()}"
    await service.submit(RegisterSession(session_key=key, agent_from="a"))
    hid = await request(service, key)
    results = await asyncio.gather(
        *(attempt(service, AcceptHandoff(session_key=key, handoff_id=hid, agent="b")) for _ in range(10))
    )
    assert codes(results) == ["HANDOFF_CONFLICT"] * 9 + ["OK"]
    assert (await service.session(key)).version == 3  # type: ignore[union-attr]


async def test_concurrent_retries_with_one_idempotency_key_return_one_result_and_write_once(
    service: KafkaService,
) -> None:
    key = f"s-{uid()}"
    await service.submit(RegisterSession(session_key=key, agent_from="a"))
    cmd = AppendContext(session_key=key, context_type="message", content="once", idempotency_key="k1")
    results = await asyncio.gather(*(attempt(service, cmd) for _ in range(10)))
    assert codes(results) == ["OK"] * 10
    assert {r.envelope.event_id for r in results} == {results[0].envelope.event_id}  # type: ignore[union-attr]
    assert (await service.session(key)).version == 2  # type: ignore[union-attr]
    other = AppendContext(session_key=key, context_type="message", content="other", idempotency_key="k1")
    assert isinstance(await attempt(service, other), E.IdempotencyMismatch)


async def test_a_platform_record_sent_twice_is_decided_once(
    service: KafkaService, broker: Broker, topics: Topics
) -> None:
    key = f"s-{uid()}"
    await service.submit(RegisterSession(session_key=key, agent_from="a"))
    record = encode_command(CommandRecord(
        command_id=f"plat-{uid()}", command=AppendContext(session_key=key, context_type="task", content="t"),
    ))  # fmt: skip
    await produce(broker.bootstrap, topics.commands, key, (record, []), (record, []))
    last = await service.submit(AppendContext(session_key=key, context_type="message", content="after"))
    assert last.envelope.version == 3
    entries, _ = await service.context(key, 0, 10)
    assert [e.content for e in entries] == ["Session registered by agent: a", "t", "after"]


async def test_a_record_sent_twice_gets_the_same_reply_with_its_event_twice_and_its_content_is_stored_once(
    service: KafkaService, broker: Broker, topics: Topics, worker: Worker
) -> None:
    key, probe, content = f"s-{uid()}", f"probe-{uid()}", f"content {uid()} " * 20
    await service.submit(RegisterSession(session_key=key, agent_from="a"))
    command_id = f"plat-{uid()}"
    record = encode_command(CommandRecord(
        command_id=command_id, reply_to=probe,
        command=AppendContext(session_key=key, context_type="task", content=content),
    ))  # fmt: skip
    await produce(broker.bootstrap, topics.commands, key, (record, []))
    await service.submit(AppendContext(session_key=key, context_type="message", content="between"))
    await produce(broker.bootstrap, topics.commands, key, (record, []))  # in a later batch: answered from the store
    await service.submit(AppendContext(session_key=key, context_type="message", content="after"))

    async def both() -> list[Reply]:
        found = await read_topic(broker.bootstrap, topics.replies, topics.partitions)
        return [decode_reply(m.value) for m in found if m.key == probe.encode()]

    replies = await wait_until(lambda: _at_least(both, 2), 30, "both replies")
    assert [r.command_id for r in replies] == [command_id, command_id]
    first, second = (decode_envelope(bytes(r.event)) for r in replies)
    assert first == second and first.version == 2 and first.event.content == content  # type: ignore[union-attr]
    stored = worker.parts[topics.partition_for(key)].store.kv.get(dedupe_key(command_id))
    assert stored is not None and content.encode() not in stored
    assert (await service.session(key)).version == 4  # type: ignore[union-attr]


async def _at_least(read: Callable[[], Awaitable[list[Reply]]], n: int) -> list[Reply] | None:
    found = await read()
    return found if len(found) >= n else None


async def test_lists_merge_every_partition_newest_first_with_a_cursor(service: KafkaService) -> None:
    agent = f"ag-{uid()}"
    keys = [f"s-{uid()}" for _ in range(7)]
    for key in keys:
        await service.submit(RegisterSession(session_key=key, agent_from=agent))
        await asyncio.sleep(0.002)  # distinct creation milliseconds: the index orders by them
    seen: list[str] = []
    cursor = None
    while True:
        page = await service.list_sessions(agent, None, 3, cursor)
        seen += [s.session_key for s in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(keys))
