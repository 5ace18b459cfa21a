"""Replication on the cluster: topics at RF 3 / min ISR 2, and calls without an in-sync quorum write nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from kafka.support import read_events

from cluster.support import Cluster, McpClient, Tally, check_log, internal_and, new_topics, running_deployment, until
from handoff.kernel.events import ContextAppended
from streams.topiccheck import describe
from streams.topics import ensure_topics

pytestmark = pytest.mark.anyio


async def test_topics_created_on_three_brokers_have_three_replicas_and_need_two_in_sync(cluster: Cluster) -> None:
    topics = new_topics("rf")
    await ensure_topics(cluster.bootstrap, topics, group=topics.group)  # the group: Kafka creates its offsets topic
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        states = await describe(admin, [spec.name for spec in topics.specs()])
        internal = await admin.describe_topics(["__consumer_offsets"])
    finally:
        await admin.close()
    assert sorted(states) == sorted(spec.name for spec in topics.specs())
    for state in states.values():
        assert (state.name, state.replication, state.configs["min.insync.replicas"]) == (state.name, 3, "2")
    assert {len(p["replicas"]) for t in internal for p in t["partitions"]} == {3}


async def test_without_an_in_sync_quorum_calls_answer_unavailable_and_write_nothing_then_succeed_again(
    cluster: Cluster, tmp_path: Path, figures: Callable[[dict[str, Any]], None]
) -> None:
    topics = new_topics("q", partitions=3)
    with running_deployment(cluster, topics, tmp_path, workers=1) as dep:
        async with aiohttp.ClientSession() as http:
            client = await McpClient(http, dep.served.mcp_url).open()
            key = f"q-{uuid.uuid4().hex[:8]}"
            tally = Tally()
            assert (await client.call("register_session", {"sessionKey": key, "agentFrom": "a"}))["success"]

            def append(content: str) -> Any:
                return client.call("update_context", {"sessionKey": key, "contextType": "message", "content": content})

            for node in (2, 3):  # two of three: no partition has its two in-sync replicas, the controller no quorum
                await asyncio.to_thread(cluster.kill, node)
            refused = await asyncio.gather(*(append(f"refused-{i}") for i in range(4)))
            assert [r["code"] for r in refused] == ["UNAVAILABLE"] * 4, refused
            tally.unavailable += len(refused)

            down = time.monotonic()
            await asyncio.to_thread(cluster.start, 2, 3)
            back = time.monotonic()

            async def succeeds() -> bool:  # the same processes: neither serve nor the worker is restarted
                out = await append(f"after-{tally.retries}")
                if out["success"]:
                    tally.acked[f"after-{tally.retries}"] = (key, out["contextEntry"]["sequenceNumber"])
                    return True
                assert out["code"] == "UNAVAILABLE", out
                tally.unavailable += 1
                tally.retries += 1
                return False

            await until(succeeds, 180, "a call to succeed once the brokers are back")
            recovered, restarted = time.monotonic() - back, back - down
        await dep.cluster.until_in_sync(internal_and(topics))
        dep.alive()
        await check_log(cluster.bootstrap, topics, tally)
        contents = [e.event.content for _, _, e, _ in await read_events(cluster.bootstrap, topics)
                    if isinstance(e.event, ContextAppended)]  # fmt: skip
        assert [c for c in contents if c.startswith("refused-")] == []
        assert len(contents) == 1
        admin = await cluster.admin()  # the deciders' transactions made Kafka create its transaction state topic
        try:
            (state,) = await admin.describe_topics(["__transaction_state"])
        finally:
            await admin.close()
        assert {len(p["replicas"]) for p in state["partitions"]} == {3}
    figures(tally.figures("quorum-lost", nodesRestartSeconds=round(restarted, 1),
                          firstSuccessAfterRestartSeconds=round(recovered, 1)))  # fmt: skip
