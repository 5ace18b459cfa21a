"""Kafka tier: one real broker per test session (compose/kafka-local.sh), workers in-process or as processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from integration.harness import Served, http_client
from mcp import Client

from kafka.mcp import KafkaMcp, running_kafka_mcp
from kafka.secure import SecureBroker, secure_broker
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
def secured(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A second broker, SASL_SSL with SCRAM-SHA-256 only for clients (after `broker`: Java and the jars are there)."""
    if shutil.which("openssl") is None:
        _unavailable("openssl is not installed (the secured broker's certificates are made with it)")
    with secure_broker(tmp_path_factory.mktemp("kafka-secure")) as running:
        yield running


@pytest.fixture(scope="session")
def secured_mcp(secured: SecureBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaMcp]:
    """A `handoff worker` + `handoff serve --kafka` on the secured broker, their settings in HANDOFF_KAFKA_*."""
    with running_kafka_mcp(secured.bootstrap, tmp_path_factory.mktemp("secure-mcp"), env=secured.env()) as running:
        yield running


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


# -- the MCP contracts of tests/integration and tests/e2e, subclassed by tests/kafka/test_mcp_*.py ------


@pytest.fixture(scope="session")
def kafka_mcp(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaMcp]:
    """One `handoff worker` + `handoff serve --kafka` for every MCP contract test (they use unique keys)."""
    with running_kafka_mcp(broker.bootstrap, tmp_path_factory.mktemp("kafka-mcp")) as running:
        yield running


@pytest.fixture(scope="module")
def server(kafka_mcp: KafkaMcp) -> Iterator[Served]:
    """What tests/integration's `server` is, in Kafka mode (test_mcp_public_path.py: accelerators off)."""
    yield kafka_mcp.served
    assert kafka_mcp.served.proc.poll() is None, f"serve --kafka died during the module\n{kafka_mcp.logs()}"
    assert kafka_mcp.worker.poll() is None, f"the worker died during the module\n{kafka_mcp.logs()}"


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def key(uid: str) -> str:
    """A session key no other test uses."""
    return f"k-{uid}"


@pytest.fixture
async def client(server: Served) -> AsyncIterator[Client]:
    async with http_client(server.mcp_url) as c:
        yield c
