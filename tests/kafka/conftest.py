"""Kafka tier: one real broker per test session (compose/kafka-local.sh), workers in-process or as processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kafka.support import Broker, running_service, running_worker
from streams.client import KafkaService
from streams.topics import Topics
from streams.worker import Worker

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "compose" / "kafka-local.sh"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/kafka/" in str(item.fspath):
            item.add_marker(pytest.mark.kafka)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the Kafka tests need a broker and cannot start one: {reason}", pytrace=False)
    print(f"\nSKIPPING the Kafka tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A single-node Kafka for the whole session; stopped at the end."""
    if shutil.which("java") is None:
        _unavailable("java is not installed (Kafka 4 needs Java 17+)")
    state = tmp_path_factory.mktemp("kafka")
    env = dict(os.environ, HANDOFF_KAFKA_DIR=str(state))
    env.pop("HANDOFF_KAFKA_PORT", None)
    env.pop("HANDOFF_KAFKA_CONTROLLER_PORT", None)
    done = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        _unavailable(f"compose/kafka-local.sh start failed:\n{done.stderr[-3000:]}")
    broker = Broker(done.stdout.strip().splitlines()[-1], SCRIPT, env)
    try:
        yield broker
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def topics() -> Topics:
    """Topics no other test uses (a unique prefix), 4 partitions to keep the broker light."""
    return Topics(f"t{uuid.uuid4().hex[:8]}", 4)


@pytest.fixture(scope="module")
async def worker(broker: Broker, topics: Topics, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Worker]:
    async with running_worker(broker.bootstrap, topics, tmp_path_factory.mktemp("w1")) as w:
        yield w


@pytest.fixture(scope="module")
async def service(broker: Broker, topics: Topics, worker: Worker) -> AsyncIterator[KafkaService]:
    async with running_service(broker.bootstrap, topics) as svc:
        yield svc
