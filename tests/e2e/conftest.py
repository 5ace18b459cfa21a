"""E2E tier: `handoff serve` and `handoff stdio` started as a user would, with every process cleaned up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from integration.harness import (
    Inbox,
    Served,
    expected_protocol,
    http_client,
    running_server,
    stdio_mcp_client,
    stop_engine_of,
)
from mcp import Client

Connect = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def key(uid: str) -> str:
    return f"e2e-{uid}"


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve")
    with running_server(root / "data", root / "server.log") as served:
        yield served


@pytest.fixture(scope="module")
def stdio_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir shared by the module's `handoff stdio` processes; the engine they start is stopped after."""
    root = tmp_path_factory.mktemp("stdio")
    try:
        yield root
    finally:
        stop_engine_of(root / "data")


@pytest.fixture
def stdio_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir of this test alone for `handoff stdio` processes; the engine they start is stopped after."""
    try:
        yield tmp_path / "data"
    finally:
        stop_engine_of(tmp_path / "data")
        # Shown by pytest only when the test failed: what the stdio processes and their engine logged.
        for log in sorted([*tmp_path.glob("*.log"), *(tmp_path / "data").glob("**/*.log")]):
            print(f"--- {log} ---\n{log.read_text(errors='replace')[-5000:]}")


TRANSPORTS = [("http", "auto"), ("http", "legacy"), ("stdio", "auto"), ("stdio", "legacy")]


@pytest.fixture(params=TRANSPORTS, ids=[f"{t}-{m}" for t, m in TRANSPORTS])
def connect(request: pytest.FixtureRequest) -> Connect:
    """Open an MCP client over the parametrized transport and protocol era."""
    transport, mode = request.param
    served: Served | None = request.getfixturevalue("http_server") if transport == "http" else None
    home: Path | None = request.getfixturevalue("stdio_home") if transport == "stdio" else None

    @asynccontextmanager
    async def open_client(inbox: Inbox | None = None) -> AsyncIterator[Client]:
        if served is not None:
            ctx = http_client(served.mcp_url, mode, inbox)
        else:
            assert home is not None
            ctx = stdio_mcp_client(home / "data", home / "stdio.log", mode, inbox)
        async with ctx as client:
            assert client.protocol_version == expected_protocol(mode)
            yield client

    return open_client
