"""CONTRACT §8 over MCP: retentionPolicy and acceptWithin are taken, the session view shows its lifecycle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mcp import Client

from handoff.audit.replay import replay
from handoff.audit.verify import verify
from handoff.engine.engine import Engine
from handoff.kernel.commands import AppendContext, RegisterSession, RequestHandoff
from handoff.kernel.times import format_time
from handoff.storage.digest import digest
from handoff.storage.kv import RocksKeyValue
from integration.harness import new_handoff, ok, refused
from projections.queries import Queries


def _hours_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)) / timedelta(hours=1)


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_the_default_policy_is_standard(client: Client, key: str) -> None:
    await ok(client, "register_session", {"sessionKey": key, "agentFrom": "agent-a"})
    session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
    assert session["retentionPolicy"] == "standard"
    assert _hours_between(session["lastActivityAt"], session["expiresAt"]) == 24


@pytest.mark.anyio
async def test_an_unknown_policy_or_a_zero_accept_within_is_refused(client: Client, key: str) -> None:
    args = {"sessionKey": key, "agentFrom": "agent-a", "retentionPolicy": "forever"}
    await refused(client, "register_session", args, "INVALID_ARGUMENT")
    await new_handoff(client, key, acceptWithin=60)
    args2 = {"sessionKey": key, "targetAgent": "agent-c", "acceptWithin": 0}
    await refused(client, "request_handoff", args2, "INVALID_ARGUMENT")


@pytest.mark.anyio
async def test_a_closed_session_shows_no_expiry(client: Client, key: str) -> None:
    await ok(client, "register_session", {"sessionKey": key, "agentFrom": "agent-a"})
    await ok(client, "close_session", {"sessionKey": key, "agent": "agent-a"})
    session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
    assert session["expiresAt"] is None and session["dormant"] is False


def test_handoff_replay_and_verify_take_a_store_with_expiries_as_it_is(tmp_path: Path) -> None:
    """The expiries are events like any other: verify passes, replay gives the live views, twice alike."""
    kv = RocksKeyValue(str(tmp_path / "db"))
    at = [datetime(2026, 12, 1, tzinfo=UTC)]
    engine = Engine(kv, sync=False, clock=lambda: format_time(at[0]))
    engine.write_now([RegisterSession(session_key=f"s{i}", agent_from="a", retention_policy="short") for i in range(5)])
    engine.write_now([RequestHandoff(session_key="s0", target_agent="b", accept_within=60)])
    engine.write_now([AppendContext(session_key="s1", context_type="message", content="kept alive")])

    async def sweep() -> None:
        await engine.start()
        at[0] += timedelta(seconds=60)
        await engine.sweeper.sweep()
        at[0] += timedelta(hours=4)
        await engine.sweeper.sweep()
        await engine.stop()

    asyncio.run(sweep())
    statuses = sorted(Queries(kv).session(f"s{i}").status for i in range(5))  # type: ignore[union-attr]
    assert statuses == ["expired"] * 5
    assert verify(kv, scratch=tmp_path, quiet=True).ok
    first, second = RocksKeyValue(str(tmp_path / "r1")), RocksKeyValue(str(tmp_path / "r2"))
    a, b = replay(kv, first, quiet=True), replay(kv, second, quiet=True)
    assert a.digest == b.digest == digest(kv)
    expired = Queries(first).list_sessions(None, "expired", 100, None).items
    assert len(expired) == 5
