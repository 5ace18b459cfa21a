"""The HTTP MCP contracts against `handoff serve` with the MCP accelerators forced off.

`HANDOFF_FAST_PATH=0` makes every /mcp request go through the MCP SDK's own streamable-HTTP
transport: the path a server takes when the installed SDK is not the one the fast path was written
for. Tool errors and reads cover every tool and error code, subscriptions the session close hook and
limits the body sizes the fast path checks itself; the other suites run on the default path only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.harness import Served, running_server
from integration.test_limits import LimitsContract
from integration.test_reads import ReadsContract
from integration.test_subscriptions import SubscriptionsContract
from integration.test_tool_errors import ToolErrorsContract

PUBLIC_PATH = {"HANDOFF_FAST_PATH": "0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One `handoff serve` with the fast path off for this module; it says so when it starts serving."""
    root = tmp_path_factory.mktemp("serve-public")
    with running_server(root / "data", root / "server.log", env=PUBLIC_PATH) as served:
        assert "fastPath=False" in served.log(), f"the fast path is not off\n{served.log()}"
        yield served
        assert served.proc.poll() is None, f"the server died during the module\n{served.log()}"


class TestToolErrorsPublicPath(ToolErrorsContract):
    """`server`: this module's (fast path off); `client`: tests/integration/conftest.py."""


class TestReadsPublicPath(ReadsContract):
    """`server`: this module's (fast path off); `client`: tests/integration/conftest.py."""


class TestSubscriptionsPublicPath(SubscriptionsContract):
    """`server`: this module's (fast path off)."""


class TestLimitsPublicPath(LimitsContract):
    """`server`: this module's (fast path off); `client`: tests/integration/conftest.py."""
