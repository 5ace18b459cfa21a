"""Every query of the Kafka-mode Grafana dashboard returns data from Prometheus scraping a loaded adapter and worker."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator

import pytest
from integration.harness import child_env, handoff_command, wait_for
from promlive import empty_panels, queries, running_prometheus, scraped_for

from kafka.mcp import KafkaMcp

DASHBOARD = "handoff-kafka.json"
LOAD_SECONDS = 6


def worker_address(kafka_mcp: KafkaMcp) -> str | None:
    """host:port of the worker's query endpoint (it also serves /metrics), from the line it logs when ready."""
    found = re.search(r'\{"workerId": [^}]*"url": "([^"]+)"\}', kafka_mcp.worker_log.read_text(errors="replace"))
    return urllib.parse.urlsplit(found.group(1)).netloc if found else None


@pytest.fixture(scope="module")
def loaded(kafka_mcp: KafkaMcp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus, which scraped the adapter and the worker every second while `handoff loadtest` drove them."""
    root = tmp_path_factory.mktemp("prometheus-kafka")
    worker = wait_for(lambda: worker_address(kafka_mcp), 60, "the worker's endpoint", kafka_mcp.logs)
    served = kafka_mcp.served
    jobs = {"handoff": [urllib.parse.urlsplit(served.url).netloc], "handoff-worker": [worker]}
    with running_prometheus(root, jobs) as prometheus:
        args = ["loadtest", served.mcp_url, "--clients", "4", "--seconds", str(LOAD_SECONDS), "--json", "--quiet"]
        done = subprocess.run([*handoff_command(), *args], cwd=root, env=child_env(), capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
        report = json.loads(done.stdout)
        assert report["overall"]["calls"] > report["overall"]["errors"], report["errors"]  # the load is the point here
        for job in jobs:
            wait_for(lambda job=job: scraped_for(prometheus, job, LOAD_SECONDS), 120, f"scrapes of {job}")
        yield prometheus


def test_every_panel_query_returns_data_from_prometheus_scraping_kafka_mode_under_load(loaded: str) -> None:
    empty = empty_panels(loaded, DASHBOARD)
    assert not empty, f"{len(empty)} of {len(queries(DASHBOARD))} panel queries returned no data:\n" + "\n".join(empty)
