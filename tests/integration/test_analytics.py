"""Analytics in embedded mode: get_analytics and handoff://analytics count what was written, also after a restart."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from handoff.kernel.errors import Unavailable
from handoff.kernel.types import Limits
from handoff.mcp.deps import Deps
from handoff.mcp.subscriptions import Notifier
from handoff.mcp.tools import run_tool
from handoff.metrics import Metrics
from integration.harness import http_client, ok, refused, running_server
from streams.analytics_client import AnalyticsClient

pytestmark = pytest.mark.anyio


async def workload(client: Client, uid: str) -> None:
    """Two sessions of agent `a-<uid>`: one handoff to b accepted and completed, one to c rejected."""
    a, b, c = f"a-{uid}", f"b-{uid}", f"c-{uid}"
    for n, target in ((1, b), (2, c)):
        key = f"s{n}-{uid}"
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": a})
        for i in range(3):
            args = {"sessionKey": key, "contextType": "message", "content": f"entry {i}", "agent": a}
            await ok(client, "update_context", args)
        args = {"sessionKey": key, "targetAgent": target, "requestType": "full_handoff" if n == 1 else "collaboration"}
        hid = (await ok(client, "request_handoff", args))["handoff"]["handoffId"]
        if n == 1:
            await ok(client, "accept_handoff", {"handoffId": hid, "agent": b})
            await ok(client, "complete_handoff", {"handoffId": hid, "agent": b})
        else:
            await ok(client, "reject_handoff", {"handoffId": hid, "agent": c, "reason": "busy"})


async def analytics(client: Client, **args: Any) -> dict[str, Any]:
    body: dict[str, Any] = (await ok(client, "get_analytics", args))["analytics"]
    return body


async def test_get_analytics_counts_a_known_workload_for_one_agent_and_the_resource_shows_everyone(
    tmp_path: Path,
) -> None:
    uid = "x1"
    with running_server(tmp_path / "data", tmp_path / "serve.log") as served:
        async with http_client(served.mcp_url) as client:
            await workload(client, uid)
            mine = await analytics(client, window="24h", agent=f"a-{uid}")
            assert mine["sessionsByStatus"] == {"active": 1, "completed": 1}
            assert mine["handoffs"] == {
                "collaboration": {"rejected": 1, "requested": 1},
                "full_handoff": {"accepted": 1, "completed": 1, "requested": 1},
            }
            assert mine["targets"][f"b-{uid}"]["acceptanceRate"] == 1.0
            assert mine["targets"][f"b-{uid}"]["timeToAcceptSeconds"]["p50"] >= 0
            assert mine["targets"][f"c-{uid}"]["acceptanceRate"] == 0.0
            assert mine["contextEntries"] == 6 and sum(h["entries"] for h in mine["contextEntriesPerHour"]) == 6
            assert mine["busiestAgents"][0] == {"agent": f"a-{uid}", "events": 10}
            everyone = await analytics(client)
            assert everyone["window"] == "24h" and everyone["agent"] is None
            result = await client.read_resource("handoff://analytics")
            assert json.loads(result.contents[0].text) == everyone  # type: ignore[union-attr]
            await refused(client, "get_analytics", {"window": "2h"}, "INVALID_ARGUMENT")
        # a restart folds the log again: the same answers
        before = everyone
    with running_server(tmp_path / "data", tmp_path / "serve2.log") as served:
        async with http_client(served.mcp_url) as client:
            again = await analytics(client)
            if again["until"] == before["until"]:  # the same hour: the same window
                assert again == before
            assert (await analytics(client, window="7d", agent=f"a-{uid}"))["handoffs"] == mine["handoffs"]


async def test_without_an_analytics_source_get_analytics_is_unavailable() -> None:
    deps = Deps(commands=None, reads=None, limits=Limits(), metrics=Metrics(), notifier=Notifier())  # type: ignore[arg-type]
    body, is_error = await run_tool(deps, "get_analytics", {"window": "7d"})
    assert is_error and body["code"] == "UNAVAILABLE", body


async def test_an_analytics_app_that_cannot_be_reached_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(Unavailable):
            await AnalyticsClient(f"http://127.0.0.1:{port}").analytics("24h", None)
