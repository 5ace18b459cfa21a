"""Resource subscriptions over HTTP, in both protocol eras: a write by client B notifies client A."""

from __future__ import annotations

import pytest

from integration.harness import (
    MODES,
    Inbox,
    Served,
    expect_update,
    expected_protocol,
    http_client,
    new_handoff,
    new_session,
    ok,
)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
class SubscriptionsContract:
    """The subscriptions contract, in both protocol eras, for any backend behind `handoff serve`.

    A subclass (or its tier's conftest) supplies the fixtures `server` (the running `handoff serve`,
    as `Served`), `key` (a session key no other test uses) and `uid` (a unique id).
    """

    async def test_a_context_update_by_another_client_notifies_the_session_subscriber(
        self, server: Served, key: str, mode: str
    ) -> None:
        inbox = Inbox()
        async with http_client(server.mcp_url, mode, inbox) as a, http_client(server.mcp_url) as b:
            assert a.protocol_version == expected_protocol(mode)
            await new_session(b, key)

            async def write() -> None:
                await ok(b, "update_context", {"sessionKey": key, "contextType": "message", "content": "ping"})

            await expect_update(a, inbox, f"handoff://sessions/{key}", write)

    async def test_accepting_a_handoff_notifies_the_handoff_subscriber(
        self, server: Served, key: str, mode: str
    ) -> None:
        inbox = Inbox()
        async with http_client(server.mcp_url, mode, inbox) as a, http_client(server.mcp_url) as b:
            hid = (await new_handoff(b, key))["handoffId"]

            async def write() -> None:
                await ok(b, "accept_handoff", {"handoffId": hid, "agent": "agent-b"})

            await expect_update(a, inbox, f"handoff://handoffs/{hid}", write)

    async def test_a_new_handoff_notifies_the_target_agents_inbox_subscriber(
        self, server: Served, uid: str, mode: str
    ) -> None:
        inbox = Inbox()
        target = f"watcher-{uid}"
        key = f"sub-{uid}"
        async with http_client(server.mcp_url, mode, inbox) as a, http_client(server.mcp_url) as b:
            await new_session(b, key, updates=1)

            async def write() -> None:
                await ok(b, "request_handoff", {"sessionKey": key, "targetAgent": target})

            await expect_update(a, inbox, f"handoff://agents/{target}/inbox", write)

    async def test_the_server_advertises_resource_subscriptions(self, server: Served, mode: str) -> None:
        async with http_client(server.mcp_url, mode) as a:
            resources = a.server_capabilities.resources
            assert resources is not None and resources.subscribe


class TestSubscriptionsEmbedded(SubscriptionsContract):
    """`handoff serve` in embedded mode, fast path on (`server`: tests/integration/conftest.py)."""
