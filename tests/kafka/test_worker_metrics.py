"""A worker's /metrics: what it decided by outcome, its transactions, its partitions and their lag.

Also: its decided positions reach the consumer group's offsets, so standard lag tools
(`kafka-consumer-groups.sh --describe`) see a drained group as drained.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

import streams.dispatcher
from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.errors import VersionConflict
from kafka.support import Broker, produce, running_service, running_worker, until_version, wait_until
from streams.records import CommandRecord, encode_command
from streams.topics import Topics
from streams.worker import Worker

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(worker: Worker) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(f"{worker.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


async def _ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: o for tp, o in ends.items()}


async def _group_offsets(bootstrap: str, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


@pytest.fixture
async def quick_worker(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Worker, Topics]]:
    """A worker of its own (fresh counters) that commits its positions to the group every 0.2 s."""
    monkeypatch.setattr(streams.dispatcher, "POSITIONS_COMMIT_SECONDS", 0.2)
    topics = Topics(f"m{uuid.uuid4().hex[:8]}", 4)
    async with running_worker(broker.bootstrap, topics, tmp_path / "w") as worker:
        yield worker, topics


async def test_metrics_count_each_outcome_and_the_lag_drains_to_zero(
    broker: Broker, quick_worker: tuple[Worker, Topics]
) -> None:
    worker, topics = quick_worker
    async with running_service(broker.bootstrap, topics) as svc:
        key = f"s-{uuid.uuid4().hex[:8]}"
        await svc.submit(RegisterSession(session_key=key, agent_from="a"))
        for i in range(3):
            await svc.submit(AppendContext(session_key=key, context_type="message", content=f"m{i}"))
        retried = AppendContext(session_key=key, context_type="message", content="once", idempotency_key="k1")
        await svc.submit(retried)
        assert (await svc.submit(retried)).replayed
        with pytest.raises(VersionConflict):
            await svc.submit(AppendContext(session_key=key, context_type="message", content="x", expected_version=1))
        # A platform's producer retrying one record (same commandId), and a record that is not a command.
        twice = encode_command(CommandRecord(
            command_id=uuid.uuid4().hex, command=AppendContext(session_key=key, context_type="message", content="t"),
        ))  # fmt: skip
        await produce(broker.bootstrap, topics.commands, key, (twice, []), (twice, []), (b"{not json", []))
        await until_version(svc, key, 6, "the records produced directly to be decided")
        ends = await _ends(broker.bootstrap, topics.commands, topics.partitions)
        assert sum(ends.values()) == 10  # 7 through the adapter, 3 produced directly

        async def drained() -> Samples | None:
            samples = await _scrape(worker)
            done = sum(_by_label(samples, "handoff_worker_commands_total", "outcome").values()) == 10
            return samples if done else None

        samples = await wait_until(drained, 30, "every command record to be counted")

    assert _by_label(samples, "handoff_worker_commands_total", "outcome") == {
        "appended": 6.0, "replayed": 1.0, "duplicate": 1.0, "refused": 1.0, "invalid": 1.0,
    }  # fmt: skip
    assert _by_label(samples, "handoff_worker_commands_refused_total", "code") == {"VERSION_CONFLICT": 1.0}
    assert samples[("handoff_worker_events_appended_total", ())] == 6
    assert samples[("handoff_worker_dead_letters_total", ())] == 1
    assert samples[("handoff_worker_transaction_commands_sum", ())] == 10
    assert 1 <= samples[("handoff_worker_transaction_commands_count", ())] <= 10
    assert samples[("handoff_worker_transaction_seconds_count", ())] == samples[
        ("handoff_worker_transaction_commands_count", ())
    ]
    assert samples[("handoff_worker_transaction_failures_total", ())] == 0
    assert _by_label(samples, "handoff_worker_partitions", "state") == {"ready": 4.0, "preparing": 0.0}
    decided = _by_label(samples, "handoff_worker_decided_offset", "partition")
    assert {int(p): int(o) + 1 for p, o in decided.items()} == ends
    assert _by_label(samples, "handoff_worker_command_lag", "partition") == {str(p): 0.0 for p in range(4)}

    # The group's offsets follow the decided positions (committed every 0.2 s here, 5 s by default).
    async def committed() -> bool:
        offsets = await _group_offsets(broker.bootstrap, topics.group)
        return {p: max(0, offsets.get(p, 0)) for p in ends} == ends

    await wait_until(committed, 10, "the group's offsets to reach the end of handoff.commands")


async def test_metrics_show_the_lag_of_a_partition_behind_its_commands(
    broker: Broker, quick_worker: tuple[Worker, Topics], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, topics = quick_worker
    async with running_service(broker.bootstrap, topics) as svc:
        key = f"s-{uuid.uuid4().hex[:8]}"
        await svc.submit(RegisterSession(session_key=key, agent_from="a"))
        p = topics.partition_for(key)
        part = worker.parts[p]
        # Hold the partition's decider: what arrives now is fetched (the end moves) but not decided.
        async with part.decider.lock:  # type: ignore[union-attr]
            for i in range(5):
                record = CommandRecord(
                    command_id=uuid.uuid4().hex,
                    command=AppendContext(session_key=key, context_type="message", content=f"m{i}"),
                )
                await produce(broker.bootstrap, topics.commands, key, (encode_command(record), []))

            async def lagging() -> bool:
                return _by_label(await _scrape(worker), "handoff_worker_command_lag", "partition").get(str(p)) == 5

            await wait_until(lagging, 10, "a lag of 5 on the held partition")
        await until_version(svc, key, 6, "the held records to be decided")

        async def caught_up() -> bool:
            return _by_label(await _scrape(worker), "handoff_worker_command_lag", "partition").get(str(p)) == 0

        await wait_until(caught_up, 10, "the lag to fall back to 0")
