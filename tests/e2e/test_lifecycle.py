"""The handoff lifecycle end to end, over HTTP and stdio, in both protocol eras."""

from __future__ import annotations

import pytest
from integration.harness import Inbox, expect_update, ok, refused, snapshot

from e2e.conftest import Connect

TOOLS = {
    "register_session",
    "update_context",
    "request_handoff",
    "accept_handoff",
    "complete_handoff",
    "reject_handoff",
    "cancel_handoff",
    "get_handoff",
    "get_session",
    "get_context",
    "list_sessions",
    "list_handoffs",
    "close_session",
}


@pytest.mark.anyio
class LifecycleContract:
    """The lifecycle contract, for any backend and transport.

    A subclass (or its tier's conftest) supplies the fixtures `connect` (opens an MCP client of the
    server under test, given an optional `Inbox` for notifications) and `key` (a unique session key).
    """

    async def test_every_tool_declares_an_input_and_an_output_schema(self, connect: Connect) -> None:
        async with connect() as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) >= TOOLS
        for name in TOOLS:
            assert tools[name].input_schema.get("type") == "object", name
            assert tools[name].output_schema, name

    async def test_a_context_transfer_goes_from_registration_to_completion(self, connect: Connect, key: str) -> None:
        async with connect() as client:
            registered = (await ok(client, "register_session", {"sessionKey": key, "agentFrom": "planner"}))["session"]
            assert (registered["sessionKey"], registered["agentFrom"], registered["status"], registered["version"]) == (
                key,
                "planner",
                "active",
                1,
            )
            first = await ok(
                client, "update_context", {"sessionKey": key, "contextType": "message", "content": "plan A"}
            )
            second = await ok(client, "update_context", {"sessionKey": key, "contextType": "decision", "content": "go"})
            assert first["contextEntry"]["sequenceNumber"] == 2 and second["contextEntry"]["sequenceNumber"] == 3
            assert second["session"] == {"sessionKey": key, "status": "active", "version": 3}

            requested = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "builder"}))["handoff"]
            hid = requested["handoffId"]
            assert requested["status"] == "pending"
            assert requested["requestType"] == "context_transfer"
            assert (requested["sourceAgent"], requested["targetAgent"]) == ("planner", "builder")
            assert requested["package"]["tokenBudget"] == 4000
            assert len(requested["package"]["sha256"]) == 64

            inbox = await ok(client, "list_handoffs", {"targetAgent": "builder", "status": "pending", "limit": 1000})
            assert hid in [h["handoffId"] for h in inbox["handoffs"]]

            accepted = (await ok(client, "accept_handoff", {"handoffId": hid, "agent": "builder"}))["handoff"]
            assert accepted["status"] == "accepted"
            await ok(
                client,
                "update_context",
                {"sessionKey": key, "contextType": "message", "content": "built", "agent": "builder"},
            )
            done = (await ok(client, "complete_handoff", {"handoffId": hid, "agent": "builder", "result": {"ok": 1}}))[
                "handoff"
            ]
            assert done["status"] == "completed"

            fetched = await ok(client, "get_handoff", {"handoffId": hid})
            assert fetched["handoff"]["status"] == "completed"
            assert fetched["package"]["sha256"] == requested["package"]["sha256"]
            assert [e["content"] for e in fetched["package"]["entries"]][-2:] == ["plan A", "go"]

            session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
            assert session["status"] == "active"
            assert session["version"] == 7
            assert session["agentFrom"] == "planner"
            assert set(session["participants"]) >= {"planner", "builder"}
            version, entries = await snapshot(client, key)
            assert version == 7
            assert [e["sequenceNumber"] for e in entries] == [1, 2, 3, 4, 5]
            assert entries[0]["content"] == "Session registered by agent: planner"
            assert entries[3]["contextType"] == "system"

    async def test_the_target_can_reject_a_pending_handoff(self, connect: Connect, key: str) -> None:
        async with connect() as client:
            await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
            hid = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "b"}))["handoff"]["handoffId"]
            rejected = (await ok(client, "reject_handoff", {"handoffId": hid, "agent": "b", "reason": "busy"}))[
                "handoff"
            ]
            assert rejected["status"] == "rejected"
            assert (await ok(client, "get_handoff", {"handoffId": hid}))["handoff"]["status"] == "rejected"
            assert (await ok(client, "get_session", {"sessionKey": key}))["session"]["status"] == "active"
            await refused(client, "accept_handoff", {"handoffId": hid, "agent": "b"}, "HANDOFF_CONFLICT")

    async def test_the_requester_can_cancel_an_accepted_handoff(self, connect: Connect, key: str) -> None:
        async with connect() as client:
            await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
            hid = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "b"}))["handoff"]["handoffId"]
            await ok(client, "accept_handoff", {"handoffId": hid, "agent": "b"})
            cancelled = (
                await ok(client, "cancel_handoff", {"handoffId": hid, "agent": "a", "reason": "changed plan"})
            )["handoff"]
            assert cancelled["status"] == "cancelled"
            await refused(client, "complete_handoff", {"handoffId": hid, "agent": "b"}, "HANDOFF_CONFLICT")

    async def test_a_full_handoff_completes_the_session_and_refuses_further_writes(
        self, connect: Connect, key: str
    ) -> None:
        async with connect() as client:
            await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
            args = {
                "sessionKey": key,
                "targetAgent": "b",
                "requestType": "full_handoff",
                "requestData": {"why": "shift"},
            }
            hid = (await ok(client, "request_handoff", args))["handoff"]["handoffId"]
            await ok(client, "accept_handoff", {"handoffId": hid, "agent": "b"})
            assert (await ok(client, "get_session", {"sessionKey": key}))["session"]["status"] == "active"
            done = await ok(client, "complete_handoff", {"handoffId": hid, "agent": "b"})
            assert done["handoff"]["status"] == "completed"
            session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
            assert session["status"] == "completed"
            before = await snapshot(client, key)
            assert before[0] == 4
            await refused(
                client,
                "update_context",
                {"sessionKey": key, "contextType": "message", "content": "x"},
                "SESSION_NOT_ACTIVE",
            )
            await refused(client, "request_handoff", {"sessionKey": key, "targetAgent": "c"}, "SESSION_NOT_ACTIVE")
            await refused(client, "close_session", {"sessionKey": key, "agent": "b"}, "SESSION_NOT_ACTIVE")
            assert await snapshot(client, key) == before

    async def test_a_collaboration_handoff_leaves_the_session_active(self, connect: Connect, key: str) -> None:
        async with connect() as client:
            await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
            args = {"sessionKey": key, "targetAgent": "b", "requestType": "collaboration"}
            hid = (await ok(client, "request_handoff", args))["handoff"]["handoffId"]
            await ok(client, "accept_handoff", {"handoffId": hid, "agent": "b"})
            await ok(client, "complete_handoff", {"handoffId": hid, "agent": "b"})
            assert (await ok(client, "get_session", {"sessionKey": key}))["session"]["status"] == "active"

    async def test_closing_a_session_closes_it_and_cancels_its_open_handoffs(self, connect: Connect, key: str) -> None:
        async with connect() as client:
            await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
            hid = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "b"}))["handoff"]["handoffId"]
            closed = (await ok(client, "close_session", {"sessionKey": key, "agent": "a", "reason": "done"}))["session"]
            assert closed["status"] == "closed"
            assert closed["version"] == 3
            assert (await ok(client, "get_session", {"sessionKey": key}))["session"]["status"] == "closed"
            assert (await ok(client, "get_handoff", {"handoffId": hid}))["handoff"]["status"] == "cancelled"
            await refused(
                client,
                "update_context",
                {"sessionKey": key, "contextType": "message", "content": "x"},
                "SESSION_NOT_ACTIVE",
            )

    async def test_a_refused_call_is_a_tool_error_with_a_code(self, connect: Connect, key: str) -> None:
        async with connect() as client:
            await refused(client, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")
            await refused(client, "register_session", {"sessionKey": key}, "INVALID_ARGUMENT")

    async def test_a_subscriber_is_notified_of_a_write_by_another_client(self, connect: Connect, key: str) -> None:
        inbox = Inbox()
        async with connect(inbox) as watcher, connect() as writer:
            await ok(writer, "register_session", {"sessionKey": key, "agentFrom": "a"})

            async def write() -> None:
                await ok(writer, "update_context", {"sessionKey": key, "contextType": "message", "content": "news"})

            await expect_update(watcher, inbox, f"handoff://sessions/{key}", write)


class TestLifecycle(LifecycleContract):
    """Embedded mode over HTTP and stdio, in both protocol eras (`connect`: tests/e2e/conftest.py)."""
