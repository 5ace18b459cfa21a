"""tests/integration/test_tool_errors.py over SASL_SSL + SCRAM-SHA-256: worker and `serve --kafka` on a secured broker.

Both processes get the security settings as HANDOFF_KAFKA_* variables; the broker has no other
listener they could use (its PLAINTEXT one is its own), so every tool call goes over TLS, authenticated.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration.harness import Served
from integration.test_tool_errors import ToolErrorsContract

from kafka.mcp import KafkaMcp


@pytest.fixture(scope="module")
def server(secured_mcp: KafkaMcp) -> Iterator[Served]:
    """What tests/integration's `server` is, over the secured listener."""
    yield secured_mcp.served
    assert secured_mcp.served.proc.poll() is None, f"serve --kafka died during the module\n{secured_mcp.logs()}"
    assert secured_mcp.worker.poll() is None, f"the worker died during the module\n{secured_mcp.logs()}"


class TestToolErrorsOverSaslSsl(ToolErrorsContract):
    """`server`: this module's (SASL_SSL + SCRAM); `client`: tests/kafka/conftest.py."""
