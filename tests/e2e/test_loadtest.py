"""`handoff loadtest`, run as a user would, against a real `handoff serve` (HTTP) and `handoff stdio`."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration.harness import Served, child_env, handoff_command, http_get, running_server, stop_engine_of
from needs import binary

from e2e.pngpixels import colours

RUN_DEADLINE = 120.0
CHART_COLOURS = {  # the report's series colours (handoff/loadtest/html.py)
    "p50": (0x2B, 0x7B, 0xB9),
    "p95": (0xE0, 0x8A, 0x1E),
    "p99": (0xC0, 0x39, 0x2B),
    "calls/s": (0x2E, 0x8B, 0x57),
}


@dataclass
class HttpRun:
    report: dict[str, Any]
    html: Path
    written: int  # events the server's log gained during the run


def log_position(served: Served) -> int:
    status, text = http_get(served.url + "/metrics")
    assert status == 200
    match = re.search(r"^handoff_log_position (\S+)$", text, re.MULTILINE)
    assert match, text[:2000]
    return int(float(match.group(1)))


def loadtest(*args: str, cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        [*handoff_command(), "loadtest", *args], cwd=cwd, env=child_env(), capture_output=True, timeout=RUN_DEADLINE
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr.decode(errors='replace')[-5000:]}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.fixture(scope="module")
def http_run(tmp_path_factory: pytest.TempPathFactory) -> HttpRun:
    root = tmp_path_factory.mktemp("loadtest")
    with running_server(root / "data", root / "server.log") as served:
        before = log_position(served)
        args = ("--clients", "4", "--seconds", "3", "--html", "report.html", "--json")
        report = loadtest(served.mcp_url, *args, cwd=root)
        return HttpRun(report, root / "report.html", log_position(served) - before)


def test_an_http_run_reports_throughput_percentiles_and_no_errors(http_run: HttpRun) -> None:
    report = http_run.report
    overall = report["overall"]
    assert report["transport"] == "http" and report["clients"] == 4 and report["handoffLifecycle"] is True
    assert overall["calls"] > 0 and overall["errors"] == 0 and report["errors"] == {}
    assert overall["throughput"] == pytest.approx(overall["calls"] / report["phases"][0]["seconds"], rel=1e-3)
    ms = overall["latencyMs"]
    assert 0 < ms["p50"] <= ms["p95"] <= ms["p99"] <= ms["max"]
    assert {"register_session", "update_context", "request_handoff", "accept_handoff", "complete_handoff"} <= set(
        report["tools"]
    )
    assert report["client"]["cpuPercent"] > 0
    kpis = [k["name"] for k in report["kpis"]]
    assert kpis == ["p95 latency", "throughput", "error rate", "server CPU", "server memory"]


def test_every_successful_call_of_the_run_is_one_event_in_the_servers_log(http_run: HttpRun) -> None:
    overall = http_run.report["overall"]
    assert http_run.written == overall["calls"] - overall["errors"]


def test_a_local_server_has_its_cpu_and_memory_measured(http_run: HttpRun) -> None:
    server = http_run.report["server"]
    assert server is not None and server["samples"] >= 2
    assert server["rssBytes"]["max"] > 10 * 2**20
    assert server["cpuPercent"]["mean"] > 0
    assert 0 < server["memoryPercent"] < 100


def chromium(*args: str, home: Path) -> subprocess.CompletedProcess[bytes]:
    command = [binary("chromium", "chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    return subprocess.run(
        [*command, f"--user-data-dir={home}", *args], capture_output=True, timeout=RUN_DEADLINE, check=True
    )


def test_the_html_report_renders_its_charts_in_headless_chromium(http_run: HttpRun, tmp_path: Path) -> None:
    url = http_run.html.resolve().as_uri()
    dom = chromium("--dump-dom", url, home=tmp_path / "profile").stdout.decode()
    assert dom.count("<svg") == 3, dom[:3000]
    assert len(re.findall(r'<polyline class="series"[^>]*points="[^"]+"', dom)) >= 5
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,1400", url, home=tmp_path / "profile")
    pixels = colours(shot)
    assert sum(pixels.values()) == 1000 * 1400
    assert pixels.most_common(1)[0][1] < 0.9 * 1000 * 1400, "the screenshot is (nearly) blank"
    drawn = {name: pixels[rgb] for name, rgb in CHART_COLOURS.items()}
    assert all(n > 100 for n in drawn.values()), f"chart lines missing from the screenshot: {drawn}"


def test_a_stdio_run_drives_one_handoff_stdio_per_client(tmp_path: Path) -> None:
    data = tmp_path / "data"
    try:
        report = loadtest(
            "--clients", "2", "--seconds", "2", "--json", "--quiet", "--", *handoff_command(), "stdio",
            "--data-dir", str(data), cwd=tmp_path,
        )  # fmt: skip
    finally:
        stop_engine_of(data)
    assert report["transport"] == "stdio" and report["phases"][0]["clients"] == 2
    assert report["overall"]["calls"] > 0 and report["overall"]["errors"] == 0
    assert report["server"] is None  # the engine behind `handoff stdio` is another process: --pid names it


def test_several_load_tester_processes_share_the_clients_and_their_calls_add_up(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", tmp_path / "server.log") as served:
        before = log_position(served)
        report = loadtest(
            served.mcp_url, "--processes", "2", "--clients", "4", "--seconds", "2", "--json", "--quiet", cwd=tmp_path
        )
        written = log_position(served) - before
    overall = report["overall"]
    assert report["client"]["processes"] == 2 and report["phases"][0]["clients"] == 4
    assert overall["calls"] > 0 and overall["errors"] == 0, report["errors"]
    assert written == overall["calls"]  # every call of every process, and the parent's shared session, counted once
    assert {"own-sessions", "shared-session", "handoffs"} == set(report["phases"][0]["scenarios"])
