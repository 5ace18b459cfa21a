"""The tool-errors, reads and concurrency contracts in Kafka mode with every accelerator forced off.

`HANDOFF_KAFKA_ACCEL=0` and `HANDOFF_FAST_PATH=0`, set for the worker and for `serve --kafka`, make
the decider's transactions, its reads of the log and the adapter use public APIs only (aiokafka's
`producer.transaction()`, the MCP SDK's transport): the paths they take when the installed versions
are not the ones the accelerators were written for. Tool errors and reads cover every tool and error
code, concurrency the decider's transactions under concurrent writers; the lifecycle suite runs on the
default path only, to keep the Kafka tier's time in bounds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration.harness import Served
from integration.test_concurrency import ConcurrencyContract
from integration.test_reads import ReadsContract
from integration.test_tool_errors import ToolErrorsContract

from kafka.mcp import running_kafka_mcp
from kafka.support import Broker

PUBLIC_PATH = {"HANDOFF_KAFKA_ACCEL": "0", "HANDOFF_FAST_PATH": "0"}


@pytest.fixture(scope="module")
def server(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A `handoff worker` + `handoff serve --kafka` of this module alone, both with the accelerators off."""
    with running_kafka_mcp(broker.bootstrap, tmp_path_factory.mktemp("kafka-public"), env=PUBLIC_PATH) as running:
        assert "fastPath=False" in running.served.log(), running.logs()
        worker_log = running.worker_log.read_text(errors="replace")  # its partitions are ready: deciders were built
        assert "accelerator off by its switch" in worker_log and "kafka-txn" in worker_log, running.logs()
        yield running.served
        assert running.served.proc.poll() is None, f"serve --kafka died during the module\n{running.logs()}"
        assert running.worker.poll() is None, f"the worker died during the module\n{running.logs()}"


class TestToolErrorsKafkaPublicPath(ToolErrorsContract):
    """`server`: this module's (accelerators off); `client`: tests/kafka/conftest.py."""


class TestReadsKafkaPublicPath(ReadsContract):
    """`server`: this module's (accelerators off); `client`: tests/kafka/conftest.py."""


class TestConcurrencyKafkaPublicPath(ConcurrencyContract):
    """`server`: this module's (accelerators off); `client`: tests/kafka/conftest.py."""
