"""Every query of the Grafana dashboard returns data from a real Prometheus scraping `handoff serve` under load."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Iterator

import pytest
from integration.harness import Served, child_env, handoff_command, running_server, wait_for
from promlive import dashboard, empty_panels, queries, running_prometheus, scraped_for

DASHBOARD = "handoff.json"
LOAD_SECONDS = 8


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dashboard-serve")
    with running_server(root / "data", root / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def loaded(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus, which scraped the server every second while `handoff loadtest` drove it."""
    root = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(root, {"handoff": [urllib.parse.urlsplit(served.url).netloc]}) as prometheus:
        args = ["loadtest", served.mcp_url, "--clients", "4", "--seconds", str(LOAD_SECONDS), "--json", "--quiet"]
        done = subprocess.run([*handoff_command(), *args], cwd=root, env=child_env(), capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
        assert json.loads(done.stdout)["overall"]["calls"] > 0
        wait_for(lambda: scraped_for(prometheus, "handoff", LOAD_SECONDS), 120, "scrapes through the load")
        yield prometheus


def test_the_dashboard_has_the_guides_kpis_and_a_query_on_every_panel() -> None:
    titles = {title for title, _ in queries(DASHBOARD)}
    kpis = {"Throughput", "p95 latency", "Error rate", "CPU (of one core)", "Memory (of handoff:memory_limit_bytes)"}
    assert kpis <= titles
    assert all(p["targets"] for p in dashboard(DASHBOARD)["panels"] if p["type"] != "row")


def test_every_panel_query_returns_data_from_prometheus_scraping_a_loaded_server(loaded: str) -> None:
    empty = empty_panels(loaded, DASHBOARD)
    assert not empty, f"{len(empty)} of {len(queries(DASHBOARD))} panel queries returned no data:\n" + "\n".join(empty)
