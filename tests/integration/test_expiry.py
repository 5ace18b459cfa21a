"""CONTRACT §8 over MCP: retentionPolicy and acceptWithin are taken, the session view shows its lifecycle."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from mcp import Client

from integration.harness import new_handoff, ok, refused

pytestmark = pytest.mark.anyio


def _hours_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)) / timedelta(hours=1)


async def test_a_session_registered_short_expires_four_hours_after_its_last_write(client: Client, key: str) -> None:
    args = {"sessionKey": key, "agentFrom": "agent-a", "retentionPolicy": "short"}
    await ok(client, "register_session", args)
    await ok(client, "update_context", {"sessionKey": key, "contextType": "message", "content": "x"})
    session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
    assert session["retentionPolicy"] == "short" and session["dormant"] is False
    assert session["lastActivityAt"] == session["updatedAt"]
    assert _hours_between(session["lastActivityAt"], session["expiresAt"]) == 4
    listed = (await ok(client, "list_sessions", {"agent": "agent-a", "limit": 1000}))["sessions"]
    mine = next(s for s in listed if s["sessionKey"] == key)
    assert mine["expiresAt"] == session["expiresAt"]


async def test_the_default_policy_is_standard(client: Client, key: str) -> None:
    await ok(client, "register_session", {"sessionKey": key, "agentFrom": "agent-a"})
    session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
    assert session["retentionPolicy"] == "standard"
    assert _hours_between(session["lastActivityAt"], session["expiresAt"]) == 24


async def test_an_unknown_policy_or_a_zero_accept_within_is_refused(client: Client, key: str) -> None:
    args = {"sessionKey": key, "agentFrom": "agent-a", "retentionPolicy": "forever"}
    await refused(client, "register_session", args, "INVALID_ARGUMENT")
    await new_handoff(client, key, acceptWithin=60)
    args2 = {"sessionKey": key, "targetAgent": "agent-c", "acceptWithin": 0}
    await refused(client, "request_handoff", args2, "INVALID_ARGUMENT")


async def test_a_closed_session_shows_no_expiry(client: Client, key: str) -> None:
    await ok(client, "register_session", {"sessionKey": key, "agentFrom": "agent-a"})
    await ok(client, "close_session", {"sessionKey": key, "agent": "agent-a"})
    session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
    assert session["expiresAt"] is None and session["dormant"] is False
