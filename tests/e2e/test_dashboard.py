"""Every query of the Grafana dashboard returns data from a real Prometheus scraping `handoff serve` under load."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.harness import Served, child_env, handoff_command, http_get, running_server, wait_for
from needs import binary

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "handoff.json"
RULES = COMPOSE / "prometheus" / "alerts.yml"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval over a short range
LOAD_SECONDS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, with Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    status, body = http_get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, f"{expr}: HTTP {status} {body[:500]}"
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dashboard-serve")
    with running_server(root / "data", root / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def prometheus(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus on 127.0.0.1 scraping `served` every second, with the alert file's recording rules."""
    root = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlsplit(served.url).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "handoff", "static_configs": [{"targets": [target]}]}],
    }
    (root / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    with open(root / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary("prometheus", "prometheus"),
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        log_text = lambda: (root / "prometheus.log").read_text(errors="replace")[-5000:]  # noqa: E731
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 60, "Prometheus to be ready", log_text)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@pytest.fixture(scope="module")
def loaded(served: Served, prometheus: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`handoff loadtest` has run against the server while Prometheus scraped it."""
    root = tmp_path_factory.mktemp("dashboard-load")
    args = ["loadtest", served.mcp_url, "--clients", "4", "--seconds", str(LOAD_SECONDS), "--json", "--quiet"]
    done = subprocess.run([*handoff_command(), *args], cwd=root, env=child_env(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    assert json.loads(done.stdout)["overall"]["calls"] > 0

    def scraped_under_load() -> bool:
        rows = query(prometheus, f'count_over_time(up{{job="handoff"}}[{RATE_INTERVAL}])')
        return bool(rows) and float(rows[0]["value"][1]) >= LOAD_SECONDS

    wait_for(scraped_under_load, 60, "Prometheus to have scraped the server through the load")
    return prometheus


def test_the_dashboard_has_the_guides_kpis_and_a_query_on_every_panel() -> None:
    titles = [title for title, _ in queries()]
    kpis = ("Throughput", "p95 latency", "Error rate", "CPU (of one core)", "Memory (of handoff:memory_limit_bytes)")
    assert set(kpis) <= set(titles)
    dashboard = json.loads(DASHBOARD.read_text())
    assert all(p["targets"] for p in dashboard["panels"] if p["type"] != "row")


def has_data(rows: list[dict[str, Any]]) -> bool:
    """At least one series with a number (a quantile over a histogram that saw nothing is NaN: no data)."""
    return any(row["value"][1] not in ("NaN", "+Inf", "-Inf") for row in rows)


def test_every_panel_query_returns_data_from_prometheus_scraping_a_loaded_server(loaded: str) -> None:
    empty = [f"{title}: {expr}" for title, expr in queries() if not has_data(query(loaded, expr))]
    assert not empty, f"{len(empty)} of {len(queries())} panel queries returned no data:\n" + "\n".join(empty)
