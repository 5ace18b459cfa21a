"""Integration tier: the official MCP client against a real `handoff serve` process (one per module)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from mcp import Client

from integration.harness import Served, http_client, running_server


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One `handoff serve` per test module; tests keep apart by using unique session keys and agents.

    tests/integration/test_public_path.py runs the same contracts against a server with its accelerators off.
    """
    root = tmp_path_factory.mktemp("serve")
    with running_server(root / "data", root / "server.log") as served:
        yield served
        assert served.proc.poll() is None, f"the server died during the module\n{served.log()}"


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def key(uid: str) -> str:
    """A session key no other test uses."""
    return f"s-{uid}"


@pytest.fixture
async def client(server: Served) -> AsyncIterator[Client]:
    async with http_client(server.mcp_url) as c:
        yield c
