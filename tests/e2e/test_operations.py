"""CONTRACT §9's job and configuration tools over MCP against `handoff serve` (embedded), and periodic anchors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from integration.harness import (
    Served,
    child_env,
    handoff_command,
    http_client,
    http_get,
    ok,
    refused,
    start_server,
    wait_for,
)

from e2e.auth_support import bearer_client, token_cli

pytestmark = pytest.mark.anyio

JOBS = {"session-expiry", "handoff-expiry", "dormancy", "retention", "anchor"}
STATS = {"totalRuns", "successfulRuns", "failedRuns", "averageDurationMs", "lastRun", "lastSuccess", "lastFailure"}
OPERATIONS_TOOLS = ("get_job_status", "run_job_now", "update_job_config", "get_configuration", "update_configuration")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("ops")
    server = start_server(root / "data", root / "server.log")
    try:
        yield server
    finally:
        server.stop()


async def test_the_operations_tools_declare_input_and_output_schemas(served: Served) -> None:
    async with http_client(served.mcp_url) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in OPERATIONS_TOOLS:
        assert tools[name].input_schema["type"] == "object" and tools[name].output_schema, name
    assert tools["run_job_now"].input_schema["required"] == ["jobName"]


async def test_healthz_reports_the_expiry_jobs_as_the_sweeper_component(served: Served) -> None:
    status, body = http_get(served.url + "/healthz")
    sweeper = json.loads(body)["components"]["sweeper"]
    assert status == 200 and sweeper["status"] == "healthy" and sweeper["running"] is True
    assert sweeper["session-expiry"]["enabled"] is True


async def test_get_job_status_shows_every_job_with_its_config_and_stats(served: Served) -> None:
    async with http_client(served.mcp_url) as client:
        jobs = (await ok(client, "get_job_status", {}))["jobs"]
        one = (await ok(client, "get_job_status", {"jobName": "dormancy"}))["jobs"]
    assert set(jobs) == JOBS and set(one) == {"dormancy"}
    for job in jobs.values():
        assert {"enabled", "intervalSeconds", "running", "stats"} <= set(job) and set(job["stats"]) == STATS
    assert jobs["anchor"]["enabled"] is False  # no --anchor-dir


@pytest.mark.parametrize("tool", ["get_job_status", "run_job_now", "update_job_config"])
async def test_an_unknown_job_is_invalid_argument(served: Served, tool: str) -> None:
    args: dict[str, Any] = {"jobName": "session-cleanup"}
    if tool == "update_job_config":
        args["config"] = {"enabled": False}
    async with http_client(served.mcp_url) as client:
        await refused(client, tool, args, "INVALID_ARGUMENT")


async def test_update_job_config_changes_the_job_and_refuses_bounds_without_changing_anything(served: Served) -> None:
    async with http_client(served.mcp_url) as client:
        change = {"jobName": "dormancy", "config": {"intervalSeconds": 600}}
        job = (await ok(client, "update_job_config", change))["job"]
        assert job == {"name": "dormancy", "enabled": True, "intervalSeconds": 600}
        for bad in (0, 7 * 86400 + 1):
            args = {"jobName": "dormancy", "config": {"intervalSeconds": bad, "enabled": False}}
            await refused(client, "update_job_config", args, "LIMIT_EXCEEDED")
        await refused(client, "update_job_config", {"jobName": "dormancy", "config": {"every": 3}}, "INVALID_ARGUMENT")
        status = (await ok(client, "get_job_status", {"jobName": "dormancy"}))["jobs"]["dormancy"]
    assert (status["enabled"], status["intervalSeconds"]) == (True, 600)


async def test_run_job_now_expires_an_overdue_handoff_and_reports_its_counts(served: Served, key: str) -> None:
    async with http_client(served.mcp_url) as client:
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
        hid = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "b", "acceptWithin": 1}))[
            "handoff"
        ]["handoffId"]
        await anyio.sleep(1.2)
        run = (await ok(client, "run_job_now", {"jobName": "handoff-expiry"}))["job"]
        assert run["name"] == "handoff-expiry" and run["durationMs"] >= 0 and run["startedAt"]
        handoff = (await ok(client, "get_handoff", {"handoffId": hid}))["handoff"]
        assert handoff["status"] == "expired"  # by this run, or by the periodic run just before it
        assert set(run["result"]) == {"expired"}
        stats = (await ok(client, "get_job_status", {"jobName": "handoff-expiry"}))["jobs"]["handoff-expiry"]["stats"]
    assert stats["totalRuns"] >= 1 and stats["lastSuccess"] is not None


async def test_run_job_now_runs_the_retention_and_dormancy_jobs(served: Served) -> None:
    key = f"ret-{uuid.uuid4().hex[:8]}"
    async with http_client(served.mcp_url) as client:
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a", "retentionPolicy": "short"})
        await ok(client, "close_session", {"sessionKey": key, "agent": "a"})
        retention = (await ok(client, "run_job_now", {"jobName": "retention"}))["job"]
        dormancy = (await ok(client, "run_job_now", {"jobName": "dormancy"}))["job"]
        session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
    # Ended just now: checked, not erased before its policy's 7 days (tests/integration/test_erasure.py moves the clock)
    assert retention["result"]["checked"] >= 1 and retention["result"]["erased"] == 0 and not session["erased"]
    assert set(dormancy["result"]) == {"dormant", "active"}


async def test_configuration_reads_updates_and_checks_its_version(served: Served) -> None:
    async with http_client(served.mcp_url) as client:
        everything = await ok(client, "get_configuration", {"configSection": "all"})
        assert set(everything["configuration"]) == {"retention", "limits", "monitoring"}
        version = everything["version"]
        changed = await ok(
            client,
            "update_configuration",
            {"configSection": "retention", "values": {"eraseAfterDays": {"short": 3}}, "expectedVersion": version},
        )
        assert changed["version"] == version + 1
        assert changed["configuration"]["retention"]["eraseAfterDays"] == {"standard": 30, "extended": 90, "short": 3}
        stale = {"configSection": "retention", "values": {"eraseAfterDays": {"short": 5}}, "expectedVersion": version}
        await refused(client, "update_configuration", stale, "VERSION_CONFLICT")
        await refused(
            client, "update_configuration", {"configSection": "limits", "values": {"pageMax": 0}}, "LIMIT_EXCEEDED"
        )
        await refused(
            client, "update_configuration", {"configSection": "limits", "values": {"colour": 1}}, "INVALID_ARGUMENT"
        )
        await refused(client, "update_configuration", {"configSection": "paint", "values": {}}, "INVALID_ARGUMENT")
        after = await ok(client, "get_configuration", {"configSection": "retention"})
    assert after["version"] == version + 1 and after["configuration"]["retention"]["eraseAfterDays"]["short"] == 3


async def test_a_tightened_limit_is_in_force_at_once(served: Served, key: str) -> None:
    async with http_client(served.mcp_url) as client:
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
        await ok(client, "update_configuration", {"configSection": "limits", "values": {"contentMaxBytes": 10}})
        try:
            await refused(
                client,
                "update_context",
                {"sessionKey": key, "contextType": "message", "content": "more than ten bytes"},
                "LIMIT_EXCEEDED",
            )
        finally:
            await ok(
                client, "update_configuration", {"configSection": "limits", "values": {"contentMaxBytes": 1048576}}
            )
        await ok(client, "update_context", {"sessionKey": key, "contextType": "message", "content": "more than ten"})


async def test_job_stats_and_config_survive_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", tmp_path / "server.log")
    try:
        async with http_client(server.mcp_url) as client:
            for job in JOBS:  # nothing runs on its own after this, so the stats stay as they are
                await ok(client, "update_job_config", {"jobName": job, "config": {"enabled": False}})
            await ok(client, "run_job_now", {"jobName": "retention"})
            before = (await ok(client, "get_job_status", {"jobName": "retention"}))["jobs"]["retention"]
    finally:
        server.stop()
    server = start_server(tmp_path / "data", tmp_path / "server.log")
    try:
        async with http_client(server.mcp_url) as client:
            after = (await ok(client, "get_job_status", {"jobName": "retention"}))["jobs"]["retention"]
    finally:
        server.stop()
    assert before["stats"]["totalRuns"] >= 1 and before["stats"]["lastSuccess"] and after == before


async def test_with_auth_token_only_operators_use_the_operations_tools(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    agent = token_cli(data, "create", "--agent", "alice", "--role", "agent")["token"]
    auditor = token_cli(data, "create", "--agent", "audra", "--role", "auditor")["token"]
    operator = token_cli(data, "create", "--agent", "otto", "--role", "operator")["token"]
    server = start_server(data, tmp_path / "server.log", "--auth", "token")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_job_status", {}),
        ("run_job_now", {"jobName": "dormancy"}),
        ("update_job_config", {"jobName": "dormancy", "config": {"intervalSeconds": 60}}),
        ("get_configuration", {}),
        ("update_configuration", {"configSection": "monitoring", "values": {"logLevel": "INFO"}}),
    ]
    try:
        for token in (agent, auditor):
            async with bearer_client(server.mcp_url, token) as client:
                for tool, args in calls:
                    await refused(client, tool, args, "NOT_PERMITTED")
        async with bearer_client(server.mcp_url, operator) as client:
            for tool, args in calls:
                await ok(client, tool, args)
    finally:
        server.stop()
    log = [json.loads(line) for line in _operations_log(data)]
    assert [r["actor"] for r in log] == ["otto"] * 3  # run request, job change, configuration change


def _operations_log(data: Path) -> list[str]:
    """The operations log as JSON lines, read from the stopped engine's store."""
    script = (
        "import sys\nfrom handoff.storage.kv import RocksKeyValue\nfrom handoff.storage.operations import LOG_PREFIX\n"
        "kv = RocksKeyValue(sys.argv[1], read_only=True)\nfor v in kv.values(LOG_PREFIX): print(v.decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(data / "db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


async def test_serve_writes_signed_anchors_that_verify_passes(tmp_path: Path) -> None:
    keys, anchors, data = tmp_path / "keys", tmp_path / "anchors", tmp_path / "data"
    subprocess.run([*handoff_command(), "anchor", "--new-key", str(keys)], check=True, timeout=60, env=child_env())
    server = start_server(
        data, tmp_path / "server.log", "--anchor-dir", str(anchors), "--anchor-key", str(keys / "anchor.key"),
        "--anchor-every", "0.05",
    )  # fmt: skip
    try:
        async with http_client(server.mcp_url) as client:
            await ok(client, "register_session", {"sessionKey": "anchored-1", "agentFrom": "a"})
            status = (await ok(client, "get_job_status", {"jobName": "anchor"}))["jobs"]["anchor"]
            assert (status["enabled"], status["intervalSeconds"]) == (True, 3)
            run = (await ok(client, "run_job_now", {"jobName": "anchor"}))["job"]
            assert run["result"] == {"written": 1, "sessions": 1}

        def with_session() -> list[Path]:
            return [p for p in anchors.glob("anchor-*.json") if json.loads(p.read_text())["sessions"] == 1]

        found = wait_for(with_session, 10.0, "an anchor holding the session")
        time.sleep(3.5)  # and the periodic job keeps writing
    finally:
        server.stop()
    files = sorted(anchors.glob("anchor-*.json"))
    assert len(files) >= 3 and not list(anchors.glob("*.tmp"))
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    done = subprocess.run(
        [*handoff_command(), "verify", "--data-dir", str(data), "--anchor", str(found[0]),
         "--public-key", str(keys / "anchor.pub")],
        capture_output=True, text=True, timeout=60, env=child_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
