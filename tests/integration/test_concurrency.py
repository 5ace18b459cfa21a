"""Concurrent writers through MCP: one writer per session, gap-free sequences, exactly-one winners."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult

from integration.harness import Served, http_client, new_handoff, new_session, ok, snapshot


async def fan_out(server: Served, calls: list[tuple[str, dict[str, Any]]], clients: int = 5) -> list[CallToolResult]:
    """Run every call at once, spread over several client connections; results in call order."""
    results: list[CallToolResult | None] = [None] * len(calls)
    async with AsyncExitStack() as stack:
        pool: list[Client] = [await stack.enter_async_context(http_client(server.mcp_url)) for _ in range(clients)]

        async def one(i: int, tool: str, args: dict[str, Any]) -> None:
            results[i] = await pool[i % clients].call_tool(tool, args)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i, (tool, args) in enumerate(calls):
                    tg.start_soon(one, i, tool, args)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def codes(results: list[CallToolResult]) -> list[str]:
    return sorted("OK" if not r.is_error else (r.structured_content or {}).get("code", "?") for r in results)


@pytest.mark.anyio
class ConcurrencyContract:
    """The concurrency contract, for any backend behind `handoff serve`.

    A subclass (or its tier's conftest) supplies the fixtures `server` (the running `handoff serve`,
    as `Served`), `client` (an MCP client of it), `key` (a session key no other test uses) and `uid`.
    """

    async def test_fifty_concurrent_updates_get_fifty_distinct_gap_free_sequence_numbers(
        self, server: Served, client: Client, key: str
    ) -> None:
        await new_session(client, key)
        calls = [
            ("update_context", {"sessionKey": key, "contextType": "message", "content": f"w{i}"}) for i in range(50)
        ]
        results = await fan_out(server, calls)
        assert codes(results) == ["OK"] * 50
        numbers = sorted(r.structured_content["contextEntry"]["sequenceNumber"] for r in results)  # type: ignore[index]
        assert numbers == list(range(2, 52))
        version, entries = await snapshot(client, key)
        assert version == 51
        assert [e["sequenceNumber"] for e in entries] == list(range(1, 52))
        by_content = {e["content"]: e["sequenceNumber"] for e in entries}
        for i, r in enumerate(results):
            assert by_content[f"w{i}"] == r.structured_content["contextEntry"]["sequenceNumber"]  # type: ignore[index]

    async def test_twenty_concurrent_registrations_of_one_key_have_exactly_one_winner(
        self, server: Served, client: Client, key: str
    ) -> None:
        calls = [("register_session", {"sessionKey": key, "agentFrom": f"racer-{i}"}) for i in range(20)]
        results = await fan_out(server, calls)
        assert codes(results) == ["OK"] + ["SESSION_EXISTS"] * 19
        winner = next(r for r in results if not r.is_error).structured_content["session"]["agentFrom"]  # type: ignore[index]
        session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
        assert session["version"] == 1
        assert session["agentFrom"] == winner

    async def test_ten_concurrent_accepts_of_one_handoff_have_exactly_one_winner(
        self, server: Served, client: Client, key: str
    ) -> None:
        hid = (await new_handoff(client, key, target="agent-b"))["handoffId"]
        version, _ = await snapshot(client, key)
        calls = [("accept_handoff", {"handoffId": hid, "agent": "agent-b"}) for _ in range(10)]
        results = await fan_out(server, calls)
        assert codes(results) == ["HANDOFF_CONFLICT"] * 9 + ["OK"]
        assert (await snapshot(client, key))[0] == version + 1
        assert (await ok(client, "get_handoff", {"handoffId": hid}))["handoff"]["status"] == "accepted"

    async def test_concurrent_writers_with_the_same_expected_version_have_exactly_one_winner(
        self, server: Served, client: Client, key: str
    ) -> None:
        version = (await new_session(client, key, updates=1))["version"]
        calls = [
            (
                "update_context",
                {"sessionKey": key, "contextType": "message", "content": f"c{i}", "expectedVersion": version},
            )
            for i in range(10)
        ]
        results = await fan_out(server, calls)
        assert codes(results) == ["OK"] + ["VERSION_CONFLICT"] * 9
        assert (await snapshot(client, key))[0] == version + 1

    async def test_concurrent_retries_with_one_idempotency_key_return_one_result_and_write_once(
        self, server: Served, client: Client, key: str, uid: str
    ) -> None:
        await new_session(client, key)
        args = {"sessionKey": key, "contextType": "message", "content": "once", "idempotencyKey": f"idem-{uid}"}
        results = await fan_out(server, [("update_context", args)] * 10)
        assert codes(results) == ["OK"] * 10
        first = results[0].structured_content
        assert all(r.structured_content == first for r in results)
        version, entries = await snapshot(client, key)
        assert version == 2
        assert [e["content"] for e in entries].count("once") == 1

    async def test_concurrent_writes_to_many_sessions_keep_each_session_gap_free(
        self, server: Served, client: Client, uid: str
    ) -> None:
        keys = [f"many-{uid}-{i}" for i in range(5)]
        for k in keys:
            await new_session(client, k)
        calls = [
            ("update_context", {"sessionKey": keys[i % 5], "contextType": "message", "content": f"m{i}"})
            for i in range(50)
        ]
        results = await fan_out(server, calls)
        assert codes(results) == ["OK"] * 50
        for k in keys:
            version, entries = await snapshot(client, k)
            assert version == 11
            assert [e["sequenceNumber"] for e in entries] == list(range(1, 12))


class TestConcurrencyEmbedded(ConcurrencyContract):
    """Against `handoff serve` in embedded mode (`server` and `client`: tests/integration/conftest.py)."""
