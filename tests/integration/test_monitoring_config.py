"""The compose stack's monitoring files fit together: Prometheus config, rules, Grafana provisioning, dashboards."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from needs import binary

COMPOSE = Path(__file__).resolve().parents[2] / "compose"


def test_promtool_accepts_the_prometheus_config_and_its_rule_file() -> None:
    done = subprocess.run(
        [binary("promtool", "prometheus"), "check", "config", "prometheus.yml"],
        cwd=COMPOSE / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout + done.stderr


def test_handoffs_scrape_jobs_are_named_as_the_alert_rules_select_them() -> None:
    jobs = re.findall(r"job_name: (\S+)", (COMPOSE / "prometheus" / "prometheus.yml").read_text())
    assert {"handoff", "handoff-worker", "kafka"} == set(jobs)
    assert 'job=~"handoff.*"' in (COMPOSE / "prometheus" / "alerts.yml").read_text()


def test_every_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = re.findall(r"uid: (\S+)", (COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert provisioned == ["prometheus"]
    for path in (COMPOSE / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        uids = {
            source["uid"]
            for panel in dashboard["panels"]
            for source in [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]
            if source
        }
        assert uids == set(provisioned), f"{path.name}: {uids}"


def test_the_compose_stack_mounts_the_rules_the_provisioning_and_the_dashboards() -> None:
    compose = (COMPOSE / "docker-compose.yml").read_text()
    dashboards_at = re.search(r"path: (\S+)", (COMPOSE / "grafana/provisioning/dashboards/handoff.yml").read_text())
    assert dashboards_at
    for mount in (
        "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml",
        "./prometheus/alerts.yml:/etc/prometheus/alerts.yml",
        "./grafana/provisioning:/etc/grafana/provisioning",
        f"./grafana/dashboards:{dashboards_at.group(1)}",
    ):
        assert mount in compose, mount
