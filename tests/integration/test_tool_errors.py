"""Every error code a client can provoke through MCP, read from isError and structuredContent.code."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from integration.harness import new_handoff, new_session, ok, refused, snapshot

# Schema-invalid arguments: missing required, wrong type, unknown, out-of-enum values.
SCHEMA_INVALID: list[tuple[str, str, dict[str, Any]]] = [
    ("update_context", "missing content", {"contextType": "message"}),
    ("update_context", "missing contextType", {"content": "x"}),
    ("update_context", "content is a number", {"contextType": "message", "content": 5}),
    ("update_context", "unknown argument", {"contextType": "message", "content": "x", "colour": "red"}),
    ("update_context", "contextType not in the enum", {"contextType": "essay", "content": "x"}),
    ("update_context", "metadata is not an object", {"contextType": "message", "content": "x", "metadata": [1]}),
    (
        "update_context",
        "expectedVersion is a string",
        {"contextType": "message", "content": "x", "expectedVersion": "1"},
    ),
    ("request_handoff", "missing targetAgent", {}),
    ("request_handoff", "requestType not in the enum", {"targetAgent": "b", "requestType": "takeover"}),
    ("request_handoff", "tokenBudget is a string", {"targetAgent": "b", "tokenBudget": "lots"}),
    ("request_handoff", "requestData is a string", {"targetAgent": "b", "requestData": "please"}),
    ("close_session", "missing agent", {}),
    ("get_context", "afterSequence is a string", {"afterSequence": "x"}),
    ("get_session", "asOfVersion is a string", {"asOfVersion": "latest"}),
]


@pytest.mark.anyio
class ToolErrorsContract:
    """The tool-errors contract, for any backend behind `handoff serve`.

    A subclass (or its tier's conftest) supplies the fixtures `client` (an MCP client of the server
    under test), `key` (a session key no other test uses) and `uid` (a unique id).
    """

    @pytest.mark.parametrize(("tool", "case", "args"), SCHEMA_INVALID, ids=[f"{t}: {c}" for t, c, _ in SCHEMA_INVALID])
    async def test_schema_invalid_arguments_are_refused_as_invalid_argument_and_write_nothing(
        self, client: Client, key: str, tool: str, case: str, args: dict[str, Any]
    ) -> None:
        await new_session(client, key, updates=1)
        before = await snapshot(client, key)
        await refused(client, tool, {"sessionKey": key, **args}, "INVALID_ARGUMENT")
        assert await snapshot(client, key) == before

    async def test_register_session_without_a_session_key_is_invalid_argument(self, client: Client) -> None:
        await refused(client, "register_session", {"agentFrom": "a"}, "INVALID_ARGUMENT")

    async def test_register_session_with_a_numeric_agent_is_invalid_argument(self, client: Client, key: str) -> None:
        await refused(client, "register_session", {"sessionKey": key, "agentFrom": 7}, "INVALID_ARGUMENT")
        await refused(client, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")

    async def test_register_session_with_an_unknown_argument_is_invalid_argument(
        self, client: Client, key: str
    ) -> None:
        await refused(
            client, "register_session", {"sessionKey": key, "agentFrom": "a", "agentTo": "b"}, "INVALID_ARGUMENT"
        )
        await refused(client, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")

    async def test_accept_handoff_without_an_agent_is_invalid_argument(self, client: Client, key: str) -> None:
        handoff = await new_handoff(client, key)
        before = await snapshot(client, key)
        await refused(client, "accept_handoff", {"handoffId": handoff["handoffId"]}, "INVALID_ARGUMENT")
        assert await snapshot(client, key) == before

    async def test_reject_handoff_without_a_reason_is_invalid_argument(self, client: Client, key: str) -> None:
        handoff = await new_handoff(client, key)
        before = await snapshot(client, key)
        await refused(
            client, "reject_handoff", {"handoffId": handoff["handoffId"], "agent": "agent-b"}, "INVALID_ARGUMENT"
        )
        assert await snapshot(client, key) == before

    async def test_list_sessions_with_an_unknown_status_is_invalid_argument(self, client: Client) -> None:
        await refused(client, "list_sessions", {"status": "sleeping"}, "INVALID_ARGUMENT")

    async def test_list_handoffs_with_an_unknown_status_is_invalid_argument(self, client: Client) -> None:
        await refused(client, "list_handoffs", {"status": "maybe"}, "INVALID_ARGUMENT")

    async def test_a_handoff_to_the_agent_that_already_holds_the_session_is_refused(
        self, client: Client, key: str
    ) -> None:
        await new_session(client, key, "agent-a")
        before = await snapshot(client, key)
        result = await client.call_tool("request_handoff", {"sessionKey": key, "targetAgent": "agent-a"})
        assert result.is_error
        assert result.structured_content and result.structured_content["code"] in {"INVALID_ARGUMENT", "NOT_PERMITTED"}
        assert await snapshot(client, key) == before

    @pytest.mark.parametrize(
        ("tool", "args"),
        [
            ("get_session", {}),
            ("get_context", {}),
            ("update_context", {"contextType": "message", "content": "x"}),
            ("request_handoff", {"targetAgent": "b"}),
            ("close_session", {"agent": "a"}),
        ],
    )
    async def test_a_missing_session_is_session_not_found(
        self, client: Client, key: str, tool: str, args: dict[str, Any]
    ) -> None:
        await refused(client, tool, {"sessionKey": key, **args}, "SESSION_NOT_FOUND")
        await refused(client, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")

    async def test_registering_an_existing_session_is_session_exists(self, client: Client, key: str) -> None:
        await new_session(client, key, "agent-a")
        before = await snapshot(client, key)
        await refused(client, "register_session", {"sessionKey": key, "agentFrom": "agent-z"}, "SESSION_EXISTS")
        assert await snapshot(client, key) == before

    @pytest.mark.parametrize(
        ("tool", "args"),
        [
            ("update_context", {"contextType": "message", "content": "late"}),
            ("request_handoff", {"targetAgent": "agent-c"}),
            ("close_session", {"agent": "agent-a"}),
        ],
    )
    async def test_writes_to_a_closed_session_are_session_not_active(
        self, client: Client, key: str, tool: str, args: dict[str, Any]
    ) -> None:
        await new_session(client, key, "agent-a")
        await ok(client, "close_session", {"sessionKey": key, "agent": "agent-a", "reason": "done"})
        before = await snapshot(client, key)
        await refused(client, tool, {"sessionKey": key, **args}, "SESSION_NOT_ACTIVE")
        assert await snapshot(client, key) == before

    @pytest.mark.parametrize(
        ("tool", "args"),
        [
            ("get_handoff", {}),
            ("accept_handoff", {"agent": "b"}),
            ("complete_handoff", {"agent": "b"}),
            ("reject_handoff", {"agent": "b", "reason": "no"}),
            ("cancel_handoff", {"agent": "a"}),
        ],
    )
    async def test_an_unknown_handoff_is_handoff_not_found(
        self, client: Client, uid: str, tool: str, args: dict[str, Any]
    ) -> None:
        await refused(client, tool, {"handoffId": f"no-such-handoff-{uid}", **args}, "HANDOFF_NOT_FOUND")

    async def test_second_accept_of_an_accepted_handoff_is_handoff_conflict(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        await ok(client, "accept_handoff", {"handoffId": hid, "agent": "agent-b"})
        before = await snapshot(client, key)
        await refused(client, "accept_handoff", {"handoffId": hid, "agent": "agent-b"}, "HANDOFF_CONFLICT")
        assert await snapshot(client, key) == before

    async def test_completing_a_pending_handoff_is_handoff_conflict(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        before = await snapshot(client, key)
        await refused(client, "complete_handoff", {"handoffId": hid, "agent": "agent-b"}, "HANDOFF_CONFLICT")
        assert await snapshot(client, key) == before

    async def test_rejecting_an_accepted_handoff_is_handoff_conflict(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        await ok(client, "accept_handoff", {"handoffId": hid, "agent": "agent-b"})
        before = await snapshot(client, key)
        await refused(
            client, "reject_handoff", {"handoffId": hid, "agent": "agent-b", "reason": "x"}, "HANDOFF_CONFLICT"
        )
        assert await snapshot(client, key) == before

    async def test_cancelling_a_completed_handoff_is_handoff_conflict(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        await ok(client, "accept_handoff", {"handoffId": hid, "agent": "agent-b"})
        await ok(client, "complete_handoff", {"handoffId": hid, "agent": "agent-b"})
        before = await snapshot(client, key)
        await refused(client, "cancel_handoff", {"handoffId": hid, "agent": "agent-a"}, "HANDOFF_CONFLICT")
        assert await snapshot(client, key) == before

    async def test_accepting_a_rejected_handoff_is_handoff_conflict(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        await ok(client, "reject_handoff", {"handoffId": hid, "agent": "agent-b", "reason": "busy"})
        before = await snapshot(client, key)
        await refused(client, "accept_handoff", {"handoffId": hid, "agent": "agent-b"}, "HANDOFF_CONFLICT")
        assert await snapshot(client, key) == before

    async def test_an_agent_other_than_the_target_may_not_accept(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        before = await snapshot(client, key)
        await refused(client, "accept_handoff", {"handoffId": hid, "agent": "agent-intruder"}, "NOT_PERMITTED")
        assert await snapshot(client, key) == before

    async def test_only_the_accepting_agent_may_complete(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        await ok(client, "accept_handoff", {"handoffId": hid, "agent": "agent-b"})
        before = await snapshot(client, key)
        await refused(client, "complete_handoff", {"handoffId": hid, "agent": "agent-a"}, "NOT_PERMITTED")
        assert await snapshot(client, key) == before

    async def test_only_the_target_may_reject(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        before = await snapshot(client, key)
        await refused(client, "reject_handoff", {"handoffId": hid, "agent": "agent-a", "reason": "x"}, "NOT_PERMITTED")
        assert await snapshot(client, key) == before

    async def test_only_the_requester_may_cancel(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        before = await snapshot(client, key)
        await refused(client, "cancel_handoff", {"handoffId": hid, "agent": "agent-b"}, "NOT_PERMITTED")
        assert await snapshot(client, key) == before

    async def test_an_agent_outside_the_session_may_not_close_it(self, client: Client, key: str) -> None:
        await new_session(client, key, "agent-a")
        before = await snapshot(client, key)
        await refused(client, "close_session", {"sessionKey": key, "agent": "agent-stranger"}, "NOT_PERMITTED")
        assert await snapshot(client, key) == before

    async def test_a_stale_expected_version_is_version_conflict(self, client: Client, key: str) -> None:
        session = await new_session(client, key, updates=2)
        assert session["version"] == 3
        before = await snapshot(client, key)
        stale = {"sessionKey": key, "contextType": "message", "content": "x", "expectedVersion": 2}
        body = await refused(client, "update_context", stale, "VERSION_CONFLICT")
        assert await snapshot(client, key) == before
        assert body.get("currentVersion", 3) == 3

    async def test_the_current_expected_version_is_accepted(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=2)
        args = {"sessionKey": key, "contextType": "message", "content": "x", "expectedVersion": 3}
        assert (await ok(client, "update_context", args))["session"]["version"] == 4

    async def test_a_stale_expected_version_on_a_handoff_tool_is_version_conflict(
        self, client: Client, key: str
    ) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        before = await snapshot(client, key)
        args = {"handoffId": hid, "agent": "agent-b", "expectedVersion": 1}
        await refused(client, "accept_handoff", args, "VERSION_CONFLICT")
        assert await snapshot(client, key) == before

    async def test_register_with_expected_version_other_than_zero_is_version_conflict(
        self, client: Client, key: str
    ) -> None:
        await refused(
            client, "register_session", {"sessionKey": key, "agentFrom": "a", "expectedVersion": 3}, "VERSION_CONFLICT"
        )
        await refused(client, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")

    async def test_an_idempotency_key_reused_with_other_arguments_is_idempotency_mismatch(
        self, client: Client, key: str
    ) -> None:
        await new_session(client, key)
        first = {"sessionKey": key, "contextType": "message", "content": "one", "idempotencyKey": "retry-1"}
        await ok(client, "update_context", first)
        before = await snapshot(client, key)
        await refused(client, "update_context", {**first, "content": "two"}, "IDEMPOTENCY_MISMATCH")
        assert await snapshot(client, key) == before

    async def test_an_idempotent_retry_returns_the_first_result_and_writes_once(self, client: Client, key: str) -> None:
        await new_session(client, key)
        args = {"sessionKey": key, "contextType": "decision", "content": "use rocksdb", "idempotencyKey": "k-1"}
        first = await ok(client, "update_context", args)
        after_first = await snapshot(client, key)
        again = await ok(client, "update_context", args)
        assert again == first
        assert await snapshot(client, key) == after_first

    async def test_an_idempotent_retry_of_register_session_returns_the_first_result(
        self, client: Client, key: str
    ) -> None:
        args = {"sessionKey": key, "agentFrom": "agent-a", "idempotencyKey": "reg-1"}
        first = await ok(client, "register_session", args)
        again = await ok(client, "register_session", args)
        assert again == first
        assert (await snapshot(client, key))[0] == 1

    async def test_an_idempotent_retry_of_request_handoff_returns_the_same_handoff(
        self, client: Client, key: str
    ) -> None:
        await new_session(client, key, updates=1)
        args = {"sessionKey": key, "targetAgent": "agent-b", "idempotencyKey": "rq-1"}
        first = await ok(client, "request_handoff", args)
        again = await ok(client, "request_handoff", args)
        assert again == first
        page = await ok(client, "list_handoffs", {"sourceAgent": "agent-a", "targetAgent": "agent-b", "limit": 1000})
        assert [h["handoffId"] for h in page["handoffs"] if h["sessionKey"] == key] == [first["handoff"]["handoffId"]]

    async def test_an_idempotent_retry_of_accept_handoff_returns_the_first_result_not_a_conflict(
        self, client: Client, key: str, uid: str
    ) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        args = {"handoffId": hid, "agent": "agent-b", "idempotencyKey": f"acc-{uid}"}
        first = await ok(client, "accept_handoff", args)
        after_first = await snapshot(client, key)
        assert await ok(client, "accept_handoff", args) == first
        assert await snapshot(client, key) == after_first

    async def test_a_refused_call_does_not_consume_its_idempotency_key(
        self, client: Client, key: str, uid: str
    ) -> None:
        await new_session(client, key)
        idem = f"fresh-{uid}"
        stale = {
            "sessionKey": key,
            "contextType": "message",
            "content": "a",
            "expectedVersion": 7,
            "idempotencyKey": idem,
        }
        await refused(client, "update_context", stale, "VERSION_CONFLICT")
        other = {"sessionKey": key, "contextType": "message", "content": "b", "idempotencyKey": idem}
        assert (await ok(client, "update_context", other))["contextEntry"]["sequenceNumber"] == 2

    async def test_an_unknown_tool_is_a_protocol_error_not_a_tool_result(self, client: Client) -> None:
        try:
            result = await client.call_tool("drop_all_sessions", {})
        except MCPError:
            return
        assert result.is_error


class TestToolErrorsEmbedded(ToolErrorsContract):
    """`handoff serve` in embedded mode, fast path on (`server`, `client`: tests/integration/conftest.py)."""
