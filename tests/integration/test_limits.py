"""The size and range limits: at the limit accepted, over it refused with LIMIT_EXCEEDED and nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from integration.harness import new_handoff, new_session, ok, refused, snapshot

KiB = 1024
MiB = 1024 * KiB
# The contract bounds the JSON text of an object at 64 KiB without fixing its whitespace, so the
# boundary cases keep a margin that any reasonable encoding of {"blob": "..."} stays on one side of.
UNDER_64K = {"blob": "x" * (64 * KiB - 64)}
OVER_64K = {"blob": "x" * (64 * KiB + 64)}
# Shape rules on keys and agent names (charset, control characters, emptiness): the contract lists them
# among the limits but calls them neither; either code is a correct refusal.
SHAPE_CODES = {"INVALID_ARGUMENT", "LIMIT_EXCEEDED"}


async def refused_shape(client: Client, tool: str, args: dict[str, Any]) -> None:
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool} accepted {args!r}"
    assert result.structured_content and result.structured_content.get("code") in SHAPE_CODES, result


@pytest.mark.anyio
class LimitsContract:
    """The limits contract, for any backend behind `handoff serve`.

    A subclass (or its tier's conftest) supplies the fixtures `client` (an MCP client of the server
    under test), `key` (a session key no other test uses) and `uid` (a unique id).
    """

    async def test_a_session_key_of_255_characters_is_accepted(self, client: Client, uid: str) -> None:
        key = (uid * 26)[:255]
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
        assert (await snapshot(client, key))[0] == 1

    async def test_a_session_key_of_256_characters_is_refused_and_nothing_is_registered(
        self, client: Client, uid: str
    ) -> None:
        key = (uid * 26)[:256]
        agent = f"limit-agent-{uid}"
        await refused(client, "register_session", {"sessionKey": key, "agentFrom": agent}, "LIMIT_EXCEEDED")
        listed = await ok(client, "list_sessions", {"agent": agent})
        assert listed["sessions"] == []

    async def test_a_session_key_of_every_allowed_character_class_is_accepted(self, client: Client, uid: str) -> None:
        key = f"Az09._:-{uid}"
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})

    @pytest.mark.parametrize(
        "bad",
        ["", "has space", "slash/inside", "ünïcode", "semi;colon", "new\nline", "trailing-newline\n", "x" * 300 + "/"],
    )
    async def test_a_session_key_outside_the_charset_is_refused_and_nothing_is_registered(
        self, client: Client, uid: str, bad: str
    ) -> None:
        agent = f"charset-agent-{uid}"
        await refused_shape(client, "register_session", {"sessionKey": bad, "agentFrom": agent})
        assert (await ok(client, "list_sessions", {"agent": agent}))["sessions"] == []

    async def test_a_handoff_id_of_256_characters_is_limit_exceeded(self, client: Client, key: str) -> None:
        await new_handoff(client, key)
        before = await snapshot(client, key)
        await refused(client, "accept_handoff", {"handoffId": "h" * 256, "agent": "agent-b"}, "LIMIT_EXCEEDED")
        assert await snapshot(client, key) == before

    async def test_a_handoff_id_of_255_characters_is_within_the_limit(self, client: Client) -> None:
        await refused(client, "get_handoff", {"handoffId": "h" * 255}, "HANDOFF_NOT_FOUND")

    async def test_a_handoff_id_outside_the_charset_is_refused(self, client: Client, key: str) -> None:
        await new_handoff(client, key)
        before = await snapshot(client, key)
        await refused_shape(client, "accept_handoff", {"handoffId": "not a/valid id", "agent": "agent-b"})
        assert await snapshot(client, key) == before

    async def test_an_agent_name_of_100_characters_is_accepted(self, client: Client, key: str) -> None:
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "A" * 100})

    async def test_an_agent_name_with_spaces_and_unicode_is_accepted(self, client: Client, key: str) -> None:
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "Claude Código 🤖"})

    async def test_an_agent_name_of_101_characters_is_refused_on_register(self, client: Client, key: str) -> None:
        await refused(client, "register_session", {"sessionKey": key, "agentFrom": "A" * 101}, "LIMIT_EXCEEDED")
        await refused(client, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")

    @pytest.mark.parametrize("bad", ["tab\there", "bell\x07", "newline\n", "nul\x00", "del\x7f", ""])
    async def test_an_agent_name_with_control_characters_or_empty_is_refused(
        self, client: Client, key: str, bad: str
    ) -> None:
        await refused_shape(client, "register_session", {"sessionKey": key, "agentFrom": bad})
        await refused(client, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")

    @pytest.mark.parametrize(
        ("tool", "args"),
        [
            ("update_context", {"contextType": "message", "content": "x", "agent": "A" * 101}),
            ("request_handoff", {"targetAgent": "B" * 101}),
            ("close_session", {"agent": "A" * 101}),
        ],
    )
    async def test_an_over_long_agent_name_on_a_write_is_refused_and_writes_nothing(
        self, client: Client, key: str, tool: str, args: dict[str, Any]
    ) -> None:
        await new_session(client, key, updates=1)
        before = await snapshot(client, key)
        await refused(client, tool, {"sessionKey": key, **args}, "LIMIT_EXCEEDED")
        assert await snapshot(client, key) == before

    @pytest.mark.parametrize("tool", ["accept_handoff", "reject_handoff", "cancel_handoff", "complete_handoff"])
    async def test_an_over_long_agent_name_on_a_handoff_tool_is_refused(
        self, client: Client, key: str, tool: str
    ) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        before = await snapshot(client, key)
        extra = {"reason": "r"} if tool in ("reject_handoff", "cancel_handoff") else {}
        await refused(client, tool, {"handoffId": hid, "agent": "B" * 101, **extra}, "LIMIT_EXCEEDED")
        assert await snapshot(client, key) == before

    @pytest.mark.slow
    async def test_content_of_exactly_one_mebibyte_is_accepted(self, client: Client, key: str) -> None:
        await new_session(client, key)
        body = await ok(client, "update_context", {"sessionKey": key, "contextType": "file", "content": "x" * MiB})
        assert body["contextEntry"]["contentLength"] == MiB

    @pytest.mark.slow
    async def test_content_one_byte_over_a_mebibyte_is_refused_and_writes_nothing(
        self, client: Client, key: str
    ) -> None:
        await new_session(client, key, updates=1)
        before = await snapshot(client, key)
        args = {"sessionKey": key, "contextType": "file", "content": "x" * (MiB + 1)}
        await refused(client, "update_context", args, "LIMIT_EXCEEDED")
        assert await snapshot(client, key) == before

    @pytest.mark.slow
    async def test_content_is_measured_in_utf8_bytes_not_characters(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=1)
        before = await snapshot(client, key)
        two_byte = "é" * (MiB // 2 + 1)  # fewer than 1 Mi characters, more than 1 MiB of UTF-8
        await refused(
            client, "update_context", {"sessionKey": key, "contextType": "file", "content": two_byte}, "LIMIT_EXCEEDED"
        )
        assert await snapshot(client, key) == before

    async def test_empty_content_is_refused(self, client: Client, key: str) -> None:
        await new_session(client, key)
        before = await snapshot(client, key)
        await refused_shape(client, "update_context", {"sessionKey": key, "contextType": "message", "content": ""})
        assert await snapshot(client, key) == before

    async def test_session_metadata_under_64_kib_is_accepted(self, client: Client, key: str) -> None:
        body = await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a", "metadata": UNDER_64K})
        assert body["session"]["metadata"] == UNDER_64K

    async def test_session_metadata_over_64_kib_is_refused_and_nothing_is_registered(
        self, client: Client, key: str
    ) -> None:
        await refused(
            client, "register_session", {"sessionKey": key, "agentFrom": "a", "metadata": OVER_64K}, "LIMIT_EXCEEDED"
        )
        await refused(client, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")

    async def test_entry_metadata_over_64_kib_is_refused_and_writes_nothing(self, client: Client, key: str) -> None:
        await new_session(client, key)
        await ok(
            client,
            "update_context",
            {"sessionKey": key, "contextType": "message", "content": "a", "metadata": UNDER_64K},
        )
        before = await snapshot(client, key)
        args = {"sessionKey": key, "contextType": "message", "content": "b", "metadata": OVER_64K}
        await refused(client, "update_context", args, "LIMIT_EXCEEDED")
        assert await snapshot(client, key) == before

    async def test_request_data_over_64_kib_is_refused_and_writes_nothing(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=1)
        await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "b", "requestData": UNDER_64K})
        before = await snapshot(client, key)
        await refused(
            client,
            "request_handoff",
            {"sessionKey": key, "targetAgent": "c", "requestData": OVER_64K},
            "LIMIT_EXCEEDED",
        )
        assert await snapshot(client, key) == before

    async def test_a_result_over_64_kib_is_refused_and_the_handoff_stays_accepted(
        self, client: Client, key: str
    ) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        await ok(client, "accept_handoff", {"handoffId": hid, "agent": "agent-b"})
        before = await snapshot(client, key)
        args = {"handoffId": hid, "agent": "agent-b", "result": OVER_64K}
        await refused(client, "complete_handoff", args, "LIMIT_EXCEEDED")
        assert await snapshot(client, key) == before
        assert (await ok(client, "get_handoff", {"handoffId": hid}))["handoff"]["status"] == "accepted"
        done = await ok(client, "complete_handoff", {**args, "result": UNDER_64K})
        assert done["handoff"]["status"] == "completed"

    @pytest.mark.parametrize("budget", [100, 4000, 200_000])
    async def test_a_token_budget_within_100_to_200000_is_accepted(self, client: Client, key: str, budget: int) -> None:
        await new_session(client, key, updates=2)
        handoff = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "b", "tokenBudget": budget}))[
            "handoff"
        ]
        assert handoff["package"]["tokenBudget"] == budget
        assert handoff["package"]["estimatedTokens"] <= budget

    @pytest.mark.parametrize("budget", [0, 99, 200_001, -5])
    async def test_a_token_budget_outside_100_to_200000_is_refused_and_writes_nothing(
        self, client: Client, key: str, budget: int
    ) -> None:
        await new_session(client, key, updates=1)
        before = await snapshot(client, key)
        await refused(
            client, "request_handoff", {"sessionKey": key, "targetAgent": "b", "tokenBudget": budget}, "LIMIT_EXCEEDED"
        )
        assert await snapshot(client, key) == before

    async def test_an_idempotency_key_of_128_characters_is_accepted(self, client: Client, key: str) -> None:
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a", "idempotencyKey": "i" * 128})

    async def test_an_idempotency_key_of_129_characters_is_refused_and_writes_nothing(
        self, client: Client, key: str
    ) -> None:
        await new_session(client, key)
        before = await snapshot(client, key)
        args = {"sessionKey": key, "contextType": "message", "content": "x", "idempotencyKey": "i" * 129}
        await refused(client, "update_context", args, "LIMIT_EXCEEDED")
        assert await snapshot(client, key) == before

    @pytest.mark.parametrize(
        ("tool", "args"),
        [("get_context", {"sessionKey": "PLACEHOLDER"}), ("list_sessions", {}), ("list_handoffs", {})],
    )
    async def test_a_page_limit_of_1000_is_accepted_and_1001_is_refused(
        self, client: Client, key: str, tool: str, args: dict[str, Any]
    ) -> None:
        await new_session(client, key)
        args = {k: (key if v == "PLACEHOLDER" else v) for k, v in args.items()}
        await ok(client, tool, {**args, "limit": 1000})
        await refused(client, tool, {**args, "limit": 1001}, "LIMIT_EXCEEDED")

    @pytest.mark.parametrize("tool", ["get_context", "list_sessions", "list_handoffs"])
    async def test_a_page_limit_below_one_is_refused(self, client: Client, key: str, tool: str) -> None:
        await new_session(client, key)
        args: dict[str, Any] = {"sessionKey": key} if tool == "get_context" else {}
        await refused_shape(client, tool, {**args, "limit": 0})


class TestLimitsEmbedded(LimitsContract):
    """`handoff serve` in embedded mode, fast path on (`server`, `client`: tests/integration/conftest.py)."""
