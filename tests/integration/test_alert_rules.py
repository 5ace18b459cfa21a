"""The Prometheus alert rules of compose/: valid, unit-tested with promtool, and every rule proven to fire."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from needs import binary

PROMETHEUS = Path(__file__).resolve().parents[2] / "compose" / "prometheus"
RULES, RULE_TESTS = PROMETHEUS / "alerts.yml", PROMETHEUS / "alerts.test.yml"
GUIDE_KPIS = {  # the original guide's thresholds and the additions, each an alert
    "HandoffLatencyP95High",
    "HandoffThroughputBelowKPI",
    "HandoffThroughputDropped",
    "HandoffErrorRateHigh",
    "HandoffCPUHigh",
    "HandoffMemoryHigh",
    "HandoffKafkaConsumerLag",
    "HandoffWorkerCommandLag",
    "HandoffKafkaUnderReplicatedPartitions",
    "HandoffPendingHandoffsGrowing",
    "HandoffLogSyncFailing",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool", "prometheus"), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


def alerts() -> set[str]:
    return set(re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.MULTILINE))


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_unit_tests_pass() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_each_kpi_of_the_guide_has_an_alert() -> None:
    assert GUIDE_KPIS <= alerts(), GUIDE_KPIS - alerts()


def test_every_alert_is_shown_firing_by_some_unit_test() -> None:
    text = RULE_TESTS.read_text()
    firing = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", text))
    assert alerts() - firing == set(), "alerts no test shows firing"
    assert firing <= alerts(), "tests of alerts that do not exist"
