"""A real Prometheus (the Debian package's binary) on 127.0.0.1 for tests, and the queries of a Grafana dashboard."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from integration.harness import http_get, wait_for
from needs import binary

COMPOSE = Path(__file__).resolve().parents[1] / "compose"
RULES = COMPOSE / "prometheus" / "alerts.yml"
DASHBOARDS = COMPOSE / "grafana" / "dashboards"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval over a short range


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_prometheus(root: Path, jobs: Mapping[str, Sequence[str]]) -> Iterator[str]:
    """Prometheus scraping each job's targets (host:port) every second, with alerts.yml's rules; its URL."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(t)}]} for job, t in jobs.items()],
    }
    (root / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log_path = root / "prometheus.log"
    with open(log_path, "wb") as log:
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
        logs = lambda: log_path.read_text(errors="replace")[-5000:]  # noqa: E731
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 60, "Prometheus to be ready", logs)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's result rows."""
    status, body = http_get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, f"{expr}: HTTP {status} {body[:500]}"
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def has_data(rows: list[dict[str, Any]]) -> bool:
    """At least one series with a number (a quantile over a histogram that saw nothing is NaN: no data)."""
    return any(row["value"][1] not in ("NaN", "+Inf", "-Inf") for row in rows)


def dashboard(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return loaded


def queries(name: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, with Grafana's variables filled in."""
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for panel in dashboard(name)["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def scraped_for(prometheus: str, job: str, samples: int) -> bool:
    """Prometheus holds at least `samples` scrapes of every target of the job from the last minute."""
    rows = query(prometheus, f'count_over_time(up{{job="{job}"}}[{RATE_INTERVAL}])')
    return bool(rows) and min(float(row["value"][1]) for row in rows) >= samples


def empty_panels(prometheus: str, name: str) -> list[str]:
    """The panel queries of a dashboard that return no data."""
    return [f"{title}: {expr}" for title, expr in queries(name) if not has_data(query(prometheus, expr))]
