"""Brokers of a three-node cluster lost under load: no acknowledged write lost or doubled, no chain forked.

MCP clients write through `handoff serve --kafka` and a platform produces command records straight to
the commands topic, 3:1, over 100 sessions, while a broker is SIGKILLed (the leader of the most
events/commands partitions; the coordinator of the most deciders' transactions; one together with a
worker) or every broker is restarted in turn. Calls that find no leader answer UNAVAILABLE and are
retried with the same idempotency key. Afterwards the killed node is restarted and must catch up
(every replica back in sync), the log must hold every acknowledged write exactly once at its
acknowledged sequence number, and `handoff verify --kafka` must pass.

Sizes: HANDOFF_CLUSTER_COMMANDS (5000) writes for the leader kill, a fifth of that for the others.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cluster.support import (
    Cluster,
    Deployment,
    Feed,
    Tally,
    check_log,
    internal_and,
    new_topics,
    run_load,
    running_deployment,
    until,
    verify_kafka,
)

pytestmark = pytest.mark.anyio

COMMANDS = int(os.environ.get("HANDOFF_CLUSTER_COMMANDS", "5000"))
SMALL = max(200, COMMANDS // 5)
Figures = Callable[[dict[str, Any]], None]


async def _after(tally: Tally, writes: int) -> None:
    await until(lambda: _true(tally.writes >= writes), 300, f"{writes} acknowledged writes")


async def _true(value: bool) -> bool:
    return value


async def _settle_and_check(dep: Deployment, tally: Tally, name: str, figures: Figures, **more: Any) -> None:
    """Every node back and in sync, then the log and `handoff verify --kafka`."""
    await asyncio.to_thread(dep.cluster.start, 1, 2, 3)
    caught_up = await dep.cluster.until_in_sync(internal_and(dep.topics))
    dep.alive()
    assert tally.gave_up == 0, f"{tally.gave_up} writes were still refused after 12 attempts\n{dep.logs()}"
    counts = await check_log(dep.cluster.bootstrap, dep.topics, tally)
    verified = await asyncio.to_thread(verify_kafka, dep.cluster.bootstrap, dep.topics)
    assert verified.returncode == 0, f"handoff verify --kafka:\n{verified.stdout[-3000:]}\n{verified.stderr[-3000:]}"
    figures(tally.figures(name, inSyncAfterSeconds=round(caught_up, 1), **counts, **more))


@pytest.mark.parametrize("accel", [None, "0"], ids=["decider-default", "decider-public-aiokafka"])
async def test_the_leader_of_several_partitions_killed_under_load_loses_and_doubles_no_acknowledged_write(
    cluster: Cluster, tmp_path: Path, figures: Figures, monkeypatch: pytest.MonkeyPatch, accel: str | None
) -> None:
    if accel is None:
        monkeypatch.delenv("HANDOFF_KAFKA_ACCEL", raising=False)
    else:  # the switch to aiokafka's public transactional path (a no-op until the accelerators honour it)
        monkeypatch.setenv("HANDOFF_KAFKA_ACCEL", accel)
    topics = new_topics("lk")
    victim: list[int] = []

    async def kill_the_busiest_leader(tally: Tally, feeds: list[Feed]) -> None:
        await _after(tally, COMMANDS // 3)
        leaders = await cluster.leaders([topics.events, topics.commands])
        node, led = leaders.most_common(1)[0]
        victim.append(node)
        await asyncio.to_thread(cluster.kill, node)
        victim.append(led)

    with running_deployment(cluster, topics, tmp_path) as dep:
        tally = Tally()
        await run_load(dep, tally, kill_the_busiest_leader, total=COMMANDS)
        await _settle_and_check(dep, tally, f"leader-kill[{accel or 'default'}]", figures, killed=victim[0],
                                partitionsLed=victim[1])  # fmt: skip
    assert tally.writes == COMMANDS


async def test_a_rolling_restart_of_every_broker_under_load_loses_and_doubles_nothing(
    cluster: Cluster, tmp_path: Path, figures: Figures
) -> None:
    topics = new_topics("rr")
    waited: list[float] = []

    async def roll(tally: Tally, feeds: list[Feed]) -> None:
        await _after(tally, SMALL // 4)
        for node in (1, 2, 3):  # one at a time, each back in sync before the next goes
            await asyncio.to_thread(cluster.stop, node)
            await _after(tally, tally.writes + 20)  # the load goes on without it
            await asyncio.to_thread(cluster.start, node)
            waited.append(await cluster.until_in_sync(internal_and(topics)))
        for feed in feeds:
            feed.stop(SMALL // 8)

    with running_deployment(cluster, topics, tmp_path) as dep:
        tally = Tally()
        await run_load(dep, tally, roll, total=None)
        await _settle_and_check(dep, tally, "rolling-restart", figures, inSyncWaits=[round(w, 1) for w in waited])


async def test_a_broker_and_a_worker_killed_together_lose_and_double_nothing(
    cluster: Cluster, tmp_path: Path, figures: Figures
) -> None:
    topics = new_topics("bw")

    async def kill_both(tally: Tally, feeds: list[Feed]) -> None:
        await _after(tally, SMALL // 3)
        node, _ = (await cluster.leaders([topics.events, topics.commands])).most_common(1)[0]
        dep.workers[0].kill()
        await asyncio.to_thread(cluster.kill, node)
        await _after(tally, tally.writes + SMALL // 4)
        dep.workers[0].start()  # the broker is still down: the worker must start on two of three nodes

    with running_deployment(cluster, topics, tmp_path) as dep:
        tally = Tally()
        await run_load(dep, tally, kill_both, total=SMALL)
        assert dep.workers[0].proc is not None and dep.workers[0].proc.poll() is None, dep.workers[0].log()
        await _settle_and_check(dep, tally, "broker+worker-kill", figures)


async def test_the_transaction_coordinators_broker_killed_mid_transaction_appends_and_decides_nothing_twice(
    cluster: Cluster, tmp_path: Path, figures: Figures
) -> None:
    topics = new_topics("tc")
    victim: list[int] = []

    async def kill_the_coordinator(tally: Tally, feeds: list[Feed]) -> None:
        await _after(tally, SMALL // 3)  # under load every decider has a transaction open at almost every moment
        coordinators = await cluster.coordinators([topics.transactional_id(p) for p in range(topics.partitions)])
        node, count = coordinators.most_common(1)[0]
        victim.extend((node, count))
        await asyncio.to_thread(cluster.kill, node)

    with running_deployment(cluster, topics, tmp_path) as dep:
        tally = Tally()
        await run_load(dep, tally, kill_the_coordinator, total=SMALL)
        await _settle_and_check(dep, tally, "coordinator-kill", figures, killed=victim[0], coordinated=victim[1])
