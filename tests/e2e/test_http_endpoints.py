"""The HTTP surface of `handoff serve` besides MCP: health, readiness, metrics, DNS-rebinding protection, CLI."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from integration.harness import (
    Served,
    base_url,
    child_env,
    handoff_command,
    http_client,
    http_get,
    ok,
    read_engine_file,
    start_server,
    wait_for,
)

INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
).encode()


def post_mcp(served: Served, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        served.mcp_url,
        data=INITIALIZE,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def test_healthz_answers_ok(http_server: Served) -> None:
    assert http_get(http_server.url + "/healthz")[0] == 200


def test_readyz_answers_ok_when_the_engine_takes_writes(http_server: Served) -> None:
    assert http_get(http_server.url + "/readyz")[0] == 200


@pytest.mark.anyio
async def test_metrics_count_each_tool_and_time_it_in_a_histogram(http_server: Served, key: str) -> None:
    async with http_client(http_server.mcp_url) as client:
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
        await ok(client, "get_session", {"sessionKey": key})
        await client.call_tool("get_session", {"sessionKey": key + "-missing"})
    status, text = http_get(http_server.url + "/metrics")
    assert status == 200
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    for tool in ("register_session", "get_session"):
        tool_lines = [line for line in samples if f'"{tool}"' in line]
        assert any(re.search(r"_total\{", line) for line in tool_lines), f"no counter for {tool}:\n{text[:3000]}"
        assert any("_bucket{" in line for line in tool_lines), f"no latency histogram for {tool}:\n{text[:3000]}"
    histograms = re.findall(r"^# TYPE (\S+) histogram$", text, re.MULTILINE)
    counters = re.findall(r"^# TYPE (\S+) counter$", text, re.MULTILINE)
    assert histograms and counters


def test_the_metrics_are_prometheus_text(http_server: Served) -> None:
    status, text = http_get(http_server.url + "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+( \d+)?$", line), line


def test_a_request_with_the_servers_own_host_is_served(http_server: Served) -> None:
    assert post_mcp(http_server, {}) == 200


def test_a_request_with_a_foreign_host_header_is_refused(http_server: Served) -> None:
    status = post_mcp(http_server, {"Host": "evil.example:80"})
    assert 400 <= status < 500, status


def test_a_request_with_a_foreign_origin_is_refused(http_server: Served) -> None:
    port = urlsplit(http_server.url).port
    status = post_mcp(http_server, {"Origin": "http://evil.example", "Host": f"127.0.0.1:{port}"})
    assert 400 <= status < 500, status


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["stdio"], ["worker"], ["bench"], ["bench", "audit"]],
    ids=["handoff", "serve", "stdio", "worker", "bench", "bench-audit"],
)
def test_every_command_explains_itself_with_help(command: list[str]) -> None:
    done = subprocess.run(
        [*handoff_command(), *command, "--help"], capture_output=True, timeout=60, env=child_env(), check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"usage" in done.stdout.lower()


def test_handoff_bench_runs_a_benchmark_of_the_repository_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    run = [*handoff_command(), "bench", "audit", "--events", "2000", "--sessions", "10", "--dir", str(tmp_path)]
    done = subprocess.run(run, capture_output=True, timeout=120, env=child_env(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert b"verify: 2,000 events" in done.stdout and b"replay: 2,000 events" in done.stdout
    unknown = subprocess.run(
        [*handoff_command(), "bench", "nope"], capture_output=True, timeout=60, env=child_env(), check=False
    )
    assert unknown.returncode == 2 and b"usage: handoff bench {engine,http,kafka,audit,machine}" in unknown.stderr


def test_handoff_bench_machine_prints_a_round_trip_for_each_idle_time_and_the_wake_up_cost() -> None:
    run = [*handoff_command(), "bench", "machine", "--round-trips", "20"]
    done = subprocess.run(run, capture_output=True, timeout=120, env=child_env(), check=False)
    assert done.returncode == 0, done.stderr.decode()
    rows = done.stdout.decode().splitlines()
    assert [row.split("round trip, ")[1][:18].strip() for row in rows[:3]] == [
        "back to back", "after 1 ms idle", "after 5 ms idle",
    ]  # fmt: skip
    for row in rows[:3]:
        wall, cpu = (float(row.split(" µs wall")[0].split()[-1]), float(row.split(" µs of the caller")[0].split()[-1]))
        assert wall > 0 and cpu >= 0
    assert "asyncio.sleep(0.001)" in rows[3] and "µs of CPU per wake-up" in rows[3]


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]], ids=["serve", "worker"])
def test_a_kafka_mode_process_that_cannot_reach_kafka_exits_1_and_says_so(command: list[str], tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    env = {**child_env(), "HANDOFF_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [*handoff_command(), *command, "--kafka", nowhere], capture_output=True, timeout=90, env=env, check=False
    )
    assert done.returncode == 1, done.stderr.decode()
    assert b"cannot reach Kafka; is the broker running, and is --kafka" in done.stderr
    assert b"Traceback" not in done.stderr


def test_serve_takes_its_data_dir_from_handoff_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "from-env"
    env = {**child_env(), "HANDOFF_DATA_DIR": str(data)}
    with open(tmp_path / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [*handoff_command(), "serve", "--host", "127.0.0.1", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            info = read_engine_file(data)
            return bool(info and info.get("pid") == proc.pid and http_get(base_url(info["url"]) + "/readyz")[0] == 200)

        wait_for(
            ready, 30, f"serve to start in $HANDOFF_DATA_DIR={data}", lambda: (tmp_path / "server.log").read_text()
        )
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def test_serve_on_a_port_that_is_taken_exits_saying_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*handoff_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True, timeout=60, env=child_env(), check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert b"pass another --port" in done.stderr, done.stderr.decode()
    assert done.stdout == b""


def test_the_in_flight_gauge_counts_no_mcp_request_between_requests(http_server: Served) -> None:
    _, text = http_get(http_server.url + "/metrics")
    assert re.search(r"^handoff_mcp_requests_in_flight 0\.0$", text, re.MULTILINE), text[:3000]


@pytest.mark.anyio
async def test_with_handoff_fast_path_0_every_request_goes_through_the_sdk_and_is_served(tmp_path: Path, key: str):
    served = start_server(tmp_path / "data", tmp_path / "server.log", env={"HANDOFF_FAST_PATH": "0"})
    try:
        async with http_client(served.mcp_url) as client:
            await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
            session = await ok(client, "get_session", {"sessionKey": key})
        assert session["session"]["version"] == 1
        assert "fastPath=False" in served.log()
    finally:
        served.stop()
