"""Cluster tier: one three-node Kafka cluster per test session (compose/kafka-local.sh start --brokers 3).

Real brokers, bounced with real SIGKILLs. Every test leaves all three nodes running and in sync (the
`cluster` fixture checks), so the tests do not depend on their order. Each test records its figures
(writes, seconds, UNAVAILABLE answers, retries), printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.support import Cluster

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "compose" / "kafka-local.sh"
FIGURES = pytest.StashKey[list[dict[str, Any]]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, [])
    if figures:
        terminalreporter.section("cluster tier figures")
        for line in figures:
            terminalreporter.write_line(", ".join(f"{k}={v}" for k, v in line.items()))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the cluster tests need three brokers and cannot start them: {reason}", pytrace=False)
    print(f"\nSKIPPING the cluster tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three KRaft nodes for the whole session; stopped at the end."""
    if shutil.which("java") is None:
        _unavailable("java is not installed (Kafka 4 needs Java 17+)")
    state = tmp_path_factory.mktemp("kafka-cluster")
    env = dict(os.environ, HANDOFF_KAFKA_DIR=str(state))
    done = subprocess.run([str(SCRIPT), "start", "--brokers", "3"], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    if done.returncode != 0:
        _unavailable(f"compose/kafka-local.sh start --brokers 3 failed:\n{done.stderr[-3000:]}")
    cluster = Cluster(done.stdout.strip().splitlines()[-1], SCRIPT, env)
    try:
        yield cluster
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=300)


@pytest.fixture
def cluster(cluster_session: Cluster) -> Iterator[Cluster]:
    """The session's cluster, all three nodes running before and after the test."""
    cluster_session.start(1, 2, 3)  # a no-op for running nodes; a test that failed midway may have left one down
    yield cluster_session
    cluster_session.start(1, 2, 3)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[dict[str, Any]], None]:
    """Record a test's figures for the run's summary."""

    def record(line: dict[str, Any]) -> None:
        request.config.stash.setdefault(FIGURES, []).append(line)

    return record


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
