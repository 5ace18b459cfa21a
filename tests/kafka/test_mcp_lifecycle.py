"""The lifecycle contract (tests/e2e/test_lifecycle.py) against `serve --kafka` + one worker, over HTTP in both eras."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from e2e.conftest import Connect
from e2e.test_lifecycle import LifecycleContract
from integration.harness import MODES, Inbox, Served, expected_protocol, http_client
from mcp import Client


class TestLifecycleKafka(LifecycleContract):
    """`server`: the shared `handoff worker` + `handoff serve --kafka` of tests/kafka/conftest.py."""

    @pytest.fixture(params=MODES, ids=[f"http-{m}" for m in MODES])
    def connect(self, request: pytest.FixtureRequest, server: Served) -> Connect:
        """Open an MCP client to the Kafka-mode server in the parametrized protocol era."""
        mode: str = request.param

        @asynccontextmanager
        async def open_client(inbox: Inbox | None = None) -> AsyncIterator[Client]:
            async with http_client(server.mcp_url, mode, inbox) as client:
                assert client.protocol_version == expected_protocol(mode)
                yield client

        return open_client
