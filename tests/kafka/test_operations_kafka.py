"""CONTRACT §9 in Kafka mode: a change through one `serve --kafka` is in force on another and on the workers in 5 s.

One worker and two adapters on their own topics; the jobs run on the worker, and run_job_now
reaches it through either adapter.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from integration.harness import Served, child_env, handoff_command, http_client, ok, refused, start_server

from handoff.audit.kafka import verify_kafka
from handoff.kernel.commands import RegisterSession
from handoff.kernel.operations import decide_configuration, decide_job_config, encode_record, seal
from kafka.mcp import READY_DEADLINE, KafkaMcp, running_kafka_mcp
from kafka.support import Broker, WorkerProcess, produce, running_service, running_worker, wait_until
from streams.operations import OperationsFeed, operations_topic
from streams.topics import Topics

pytestmark = pytest.mark.anyio
PROPAGATION = 5.0


@pytest.fixture(scope="module")
def pair(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaMcp, Served]]:
    root = tmp_path_factory.mktemp("ops-kafka")
    with running_kafka_mcp(broker.bootstrap, root) as first, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HANDOFF_KAFKA_TOPIC_PREFIX", first.topics.prefix)
        mp.setenv("HANDOFF_KAFKA_PARTITIONS", str(first.topics.partitions))
        second = start_server(
            root / "serve2", root / "serve2.log", "--kafka", broker.bootstrap, deadline=READY_DEADLINE
        )
        try:
            yield first, second
        finally:
            second.stop()


async def _until(read: Any, check: Any, what: str) -> float:
    """Seconds until `check(await read())` holds; fails after PROPAGATION seconds."""
    started = time.monotonic()
    while True:
        if check(await read()):
            return time.monotonic() - started
        if time.monotonic() - started > PROPAGATION:
            raise AssertionError(f"{what} did not happen within {PROPAGATION} s")
        await anyio.sleep(0.05)


async def test_a_configuration_change_through_one_adapter_is_in_force_on_the_other_within_5_s(
    pair: tuple[KafkaMcp, Served],
) -> None:
    first, second = pair
    async with http_client(first.served.mcp_url) as a, http_client(second.mcp_url) as b:
        version = (await ok(a, "get_configuration", {}))["version"]
        values = {"eraseAfterDays": {"extended": 60}}
        args = {"configSection": "retention", "values": values, "expectedVersion": version}
        changed = await ok(a, "update_configuration", args)
        assert changed["version"] == version + 1

        async def read() -> dict[str, Any]:
            return await ok(b, "get_configuration", {"configSection": "retention"})

        def changed_there(got: dict[str, Any]) -> bool:
            days = got["configuration"]["retention"]["eraseAfterDays"]
            return bool(got["version"] == version + 1 and days["extended"] == 60)

        await _until(read, changed_there, "the other adapter seeing the change")
        await refused(b, "update_configuration", args, "VERSION_CONFLICT")  # the version the first one used is stale


async def test_a_job_change_through_one_adapter_is_in_force_on_the_other_within_5_s(
    pair: tuple[KafkaMcp, Served],
) -> None:
    first, second = pair
    async with http_client(first.served.mcp_url) as a, http_client(second.mcp_url) as b:
        await ok(a, "update_job_config", {"jobName": "dormancy", "config": {"intervalSeconds": 777}})

        async def read() -> dict[str, Any]:
            return (await ok(b, "get_job_status", {"jobName": "dormancy"}))["jobs"]["dormancy"]

        await _until(read, lambda job: job["intervalSeconds"] == 777, "the other adapter seeing the job change")
        bad = {"jobName": "dormancy", "config": {"intervalSeconds": 0}}
        await refused(b, "update_job_config", bad, "LIMIT_EXCEEDED")
        await refused(b, "get_job_status", {"jobName": "cleanup"}, "INVALID_ARGUMENT")


async def test_a_tightened_limit_set_through_one_adapter_is_enforced_by_the_workers_within_5_s(
    pair: tuple[KafkaMcp, Served], key: str
) -> None:
    first, second = pair
    async with http_client(first.served.mcp_url) as a, http_client(second.mcp_url) as b:
        await ok(b, "register_session", {"sessionKey": key, "agentFrom": "a"})
        await ok(a, "update_configuration", {"configSection": "limits", "values": {"contentMaxBytes": 10}})
        try:
            entry = {"sessionKey": key, "contextType": "message", "content": "longer than ten bytes"}

            async def attempt() -> bool:
                result = await b.call_tool("update_context", entry)
                return bool(result.is_error and (result.structured_content or {}).get("code") == "LIMIT_EXCEEDED")

            await _until(attempt, bool, "the worker refusing content over the new limit")
        finally:
            await ok(a, "update_configuration", {"configSection": "limits", "values": {"contentMaxBytes": 1048576}})


async def test_run_job_now_through_either_adapter_runs_on_the_worker_and_its_stats_add_up(
    pair: tuple[KafkaMcp, Served],
) -> None:
    first, second = pair
    async with http_client(first.served.mcp_url) as a, http_client(second.mcp_url) as b:
        before = (await ok(a, "get_job_status", {"jobName": "retention"}))["jobs"]["retention"]["stats"]["totalRuns"]
        run = (await ok(b, "run_job_now", {"jobName": "retention"}))["job"]
        assert run["name"] == "retention" and run["result"]["erased"] == 0 and run["startedAt"]
        expiry = (await ok(a, "run_job_now", {"jobName": "session-expiry"}))["job"]
        assert set(expiry["result"]) == {"expired"}
        after = (await ok(a, "get_job_status", {"jobName": "retention"}))["jobs"]["retention"]["stats"]
        assert after["totalRuns"] >= before + 1 and after["lastSuccess"] is not None
        jobs = (await ok(b, "get_job_status", {}))["jobs"]
        assert set(jobs) == {"session-expiry", "handoff-expiry", "dormancy", "retention", "anchor"}
        assert jobs["session-expiry"]["stats"]["totalRuns"] >= 1


async def test_a_workers_job_stats_survive_its_restart(broker: Broker, tmp_path: Path) -> None:
    topics = Topics(f"opsr{uuid.uuid4().hex[:8]}", 2)
    async with running_worker(broker.bootstrap, topics, tmp_path / "w") as worker:
        await worker.jobs.feed.append(lambda s: decide_job_config(s, "dormancy", False, None), "test")
        run = await worker.jobs.runner.run_now("dormancy")  # disabled: after this, nothing runs it but us
        before = worker.jobs.runner.status("dormancy").stats
    assert before.total_runs >= 1 and before.last_success is not None and run.result.keys() == {"dormant", "active"}
    async with running_worker(broker.bootstrap, topics, tmp_path / "w") as worker:
        after = worker.jobs.runner.status("dormancy")
    assert not after.enabled and after.stats == before


async def test_a_worker_with_anchor_dir_writes_anchors_of_its_partitions_that_verify_kafka_passes(
    broker: Broker, tmp_path: Path
) -> None:
    keys, anchors = tmp_path / "keys", tmp_path / "anchors"
    subprocess.run([*handoff_command(), "anchor", "--new-key", str(keys)], check=True, timeout=60, env=child_env())
    topics = Topics(f"opsa{uuid.uuid4().hex[:8]}", 2)
    worker = WorkerProcess(
        broker.bootstrap, topics, tmp_path / "w", tmp_path / "worker.log",
        extra=["--anchor-dir", str(anchors), "--anchor-key", str(keys / "anchor.key"), "--anchor-every", "0.02"],
    )  # fmt: skip
    worker.start()
    try:
        async with running_service(broker.bootstrap, topics) as service:
            for n in range(3):
                await service.submit(RegisterSession(session_key=f"anchored-{n}", agent_from="a"))
        await _two_operations(broker.bootstrap, topics)

        async def holding_all() -> list[Path]:
            return [
                p for p in anchors.glob("anchor-*.json")
                if json.loads(p.read_text())["sessions"] == 3 and json.loads(p.read_text())["operations"][0] == 2
            ]  # fmt: skip

        found = await wait_until(holding_all, 15.0, "an anchor of the worker's partitions and the operations log")
        kafka = ["--kafka", broker.bootstrap, "--topic-prefix", topics.prefix]
        done = subprocess.run(  # while the worker runs: verify also compares its views
            [*handoff_command(), "verify", *kafka, "--json",
             "--anchor", str(found[0]), "--public-key", str(keys / "anchor.pub")],
            capture_output=True, text=True, timeout=120, env=child_env(),
        )  # fmt: skip
        signed = subprocess.run(
            [*handoff_command(), "anchor", *kafka, "--key", str(keys / "anchor.key")],
            capture_output=True, text=True, timeout=120, env=child_env(),
        )  # fmt: skip
    finally:
        worker.stop()
    assert done.returncode == 0, done.stdout + done.stderr + worker.log()
    assert json.loads(done.stdout)["operations"] == {"records": 2, "superseded": 0, "ok": True}
    periodic = json.loads(found[0].read_text())
    assert periodic["format"] == "handoff-anchor/2"
    assert json.loads(signed.stdout)["operations"] == periodic["operations"], signed.stderr


async def _two_operations(bootstrap: str, topics: Topics) -> None:
    """Record a job change and a configuration change on the deployment's operations topic."""
    feed = OperationsFeed(bootstrap, topics.prefix)
    await feed.start()
    try:
        await feed.append(lambda s: decide_job_config(s, "dormancy", None, 600), "operator")
        await feed.append(lambda s: decide_configuration(s, "monitoring", {"logLevel": "WARNING"}, None), "operator")
    finally:
        await feed.stop()


async def test_verify_kafka_names_an_operations_record_edited_after_it_was_sealed(
    broker: Broker, tmp_path: Path
) -> None:
    topics = Topics(f"opsv{uuid.uuid4().hex[:8]}", 2)
    async with running_worker(broker.bootstrap, topics, tmp_path / "w") as worker:
        state = await worker.jobs.feed.append(lambda s: decide_job_config(s, "dormancy", None, 600), "operator")
        record = seal(state, decide_job_config(state, "retention", False, None), "operator", "2026-12-01T10:00:00Z")
        hidden = msgspec.structs.replace(record, event=decide_job_config(state, "retention", True, None))
        await produce(broker.bootstrap, operations_topic(topics.prefix), "ops", (encode_record(hidden), []))
        report = await asyncio.to_thread(verify_kafka, broker.bootstrap, topics.prefix, quiet=True)
    assert (report.operations, report.operations_ok) == (2, False)
    (problem,) = [p for p in report.problems if p.operations is not None]
    assert str(problem).startswith(f"operations log position 2 ({operations_topic(topics.prefix)} offset 1): hash is")


async def test_two_adapters_changing_the_same_version_at_once_one_wins_the_other_is_a_version_conflict(
    pair: tuple[KafkaMcp, Served],
) -> None:
    first, second = pair
    async with http_client(first.served.mcp_url) as a, http_client(second.mcp_url) as b:
        version = (await ok(a, "get_configuration", {}))["version"]
        await _until(lambda: ok(b, "get_configuration", {}), lambda got: got["version"] == version, "b to catch up")
        results: dict[str, Any] = {}

        async def change(name: str, client: Any, level: str) -> None:
            args = {"configSection": "monitoring", "values": {"logLevel": level}, "expectedVersion": version}
            results[name] = await client.call_tool("update_configuration", args)

        async with anyio.create_task_group() as group:
            group.start_soon(change, "a", a, "WARNING")
            group.start_soon(change, "b", b, "INFO")
        codes = sorted("OK" if not r.is_error else r.structured_content["code"] for r in results.values())
        assert codes == ["OK", "VERSION_CONFLICT"]
        after = await ok(a, "get_configuration", {"configSection": "monitoring"})
        assert after["version"] == version + 1
