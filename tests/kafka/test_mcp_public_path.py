"""The tool-errors and reads contracts in Kafka mode with the Kafka accelerators forced off.

`HANDOFF_KAFKA_ACCEL=0`, set for the worker and for `serve --kafka`, makes the decider and the
adapter use aiokafka's public API only: the path they take when the installed aiokafka is not the
one the accelerators were written for. The two contracts cover every tool and error code; the other
suites run on the default path only, to keep the Kafka tier's time in bounds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration.harness import Served
from integration.test_reads import ReadsContract
from integration.test_tool_errors import ToolErrorsContract

from kafka.mcp import running_kafka_mcp
from kafka.support import Broker

PUBLIC_PATH = {"HANDOFF_KAFKA_ACCEL": "0"}


@pytest.fixture(scope="module")
def server(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A `handoff worker` + `handoff serve --kafka` of this module alone, both with the accelerators off."""
    with running_kafka_mcp(broker.bootstrap, tmp_path_factory.mktemp("kafka-public"), PUBLIC_PATH) as running:
        yield running.served
        assert running.served.proc.poll() is None, f"serve --kafka died during the module\n{running.logs()}"
        assert running.worker.poll() is None, f"the worker died during the module\n{running.logs()}"


class TestToolErrorsKafkaPublicPath(ToolErrorsContract):
    """`server`: this module's (Kafka accelerators off); `client`: tests/kafka/conftest.py."""


class TestReadsKafkaPublicPath(ReadsContract):
    """`server`: this module's (Kafka accelerators off); `client`: tests/kafka/conftest.py."""
