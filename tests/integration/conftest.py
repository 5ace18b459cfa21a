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


# Modules whose tests also run against a server with the MCP accelerators off (HANDOFF_FAST_PATH=0): the
# public path answers them through the SDK alone. Others run accelerated only, to keep the tier's time.
BOTH_PATHS = frozenset({"test_reads", "test_tool_errors", "test_subscriptions", "test_limits"})
PUBLIC_PATH = {"HANDOFF_FAST_PATH": "0"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server" in metafunc.fixturenames and metafunc.module.__name__.rpartition(".")[2] in BOTH_PATHS:
        metafunc.parametrize("mcp_path", ["accelerated", "public"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def mcp_path(request: pytest.FixtureRequest) -> str:
    """Which path the module's server takes: "accelerated" (the default) or "public"."""
    return str(getattr(request, "param", "accelerated"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mcp_path: str) -> Iterator[Served]:
    """One `handoff serve` per test module; tests keep apart by using unique session keys and agents."""
    root = tmp_path_factory.mktemp("serve")
    env = PUBLIC_PATH if mcp_path == "public" else None
    with running_server(root / "data", root / "server.log", env) as served:
        if mcp_path == "public":
            assert "mcp-fast-path" in served.log() and "accelerator off by its switch" in served.log(), served.log()
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
