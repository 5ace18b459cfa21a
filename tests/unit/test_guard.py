"""The hardening pieces of `serve` on their own: the rate limiter, the session cap, the log budget, the options."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from handoff import hardenoptions
from handoff.hardenoptions import Hardening
from handoff.mcp.guard import BodyDeadline, LogBudget, PrincipalGuard, connection_limits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SessionApp:
    """An MCP endpoint stand-in: POST without a session opens one; DELETE closes it."""

    def __init__(self) -> None:
        self.opened = 0
        self.deleted: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        if scope["method"] == "DELETE":
            self.deleted.append(headers[b"mcp-session-id"].decode())
            reply: list[tuple[bytes, bytes]] = []
        else:
            self.opened += 1
            reply = [(b"mcp-session-id", f"s{self.opened}".encode())]
        await send({"type": "http.response.start", "status": 200, "headers": reply})
        await send({"type": "http.response.body", "body": b""})


def call(app: Any, client: str = "10.0.0.1") -> list[Message]:
    scope = {"type": "http", "method": "POST", "headers": [(b"host", b"127.0.0.1")], "client": (client, 1234)}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_past_its_burst_a_principal_gets_429_with_the_seconds_to_wait_and_others_are_not_affected() -> None:
    clock = Clock()
    guard = PrincipalGuard(SessionApp(), Hardening(rate=2.0, burst=3.0, max_sessions=0), clock)
    assert [call(guard)[0]["status"] for _ in range(3)] == [200, 200, 200]
    refused = call(guard)[0]
    assert refused["status"] == 429 and (b"retry-after", b"1") in refused["headers"]
    assert call(guard, client="10.0.0.2")[0]["status"] == 200  # another address: its own bucket
    clock.now += 0.5  # one request's worth at 2/s
    assert call(guard)[0]["status"] == 200
    assert call(guard)[0]["status"] == 429


def test_opening_a_session_past_the_cap_closes_the_principals_oldest() -> None:
    app = SessionApp()
    guard = PrincipalGuard(app, Hardening(rate=0, max_sessions=2))
    for _ in range(4):
        call(guard)
    call(guard, client="10.0.0.2")
    assert app.deleted == ["s1", "s2"]  # the first address's oldest; the other address's session is kept
    assert [len(held) for held in guard.sessions.values()] == [2, 1]


def test_the_log_budget_keeps_a_few_records_per_logger_truncated_and_counts_the_rest() -> None:
    clock = Clock()
    budget = LogBudget(per_interval=3, interval=10.0, max_chars=50, clock=clock)

    def record(message: str, name: str = "asyncio", level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, message, None, None)

    kept = [r for r in (record("x" * 500) for _ in range(1000)) if budget.filter(r)]
    assert len(kept) == 3 and all(len(r.getMessage()) <= 51 for r in kept)
    assert budget.filter(record("info", level=logging.INFO))  # below WARNING: never budgeted
    assert budget.filter(record("other logger", name="uvicorn.error"))
    clock.now += 10
    after = record("again")
    assert budget.filter(after) and after.getMessage().startswith("(997 similar records dropped)")


def test_options_come_from_flags_then_environment_then_defaults() -> None:
    parser = argparse.ArgumentParser()
    hardenoptions.add_serve_options(parser)
    ns = parser.parse_args(["--header-timeout", "2", "--max-sessions", "5"])
    got = hardenoptions.hardening(ns, {"HANDOFF_MAX_SESSIONS": "7", "HANDOFF_RATE_LIMIT": "50"})
    assert (got.header_timeout, got.max_sessions, got.rate, got.body_timeout) == (2.0, 5, 50.0, 30.0)
    assert hardenoptions.hardening(parser.parse_args([]), {}) == Hardening()
    with pytest.raises(ValueError, match="HANDOFF_BODY_TIMEOUT"):
        hardenoptions.hardening(parser.parse_args([]), {"HANDOFF_BODY_TIMEOUT": "soon"})
    with pytest.raises(ValueError, match="--max-connections"):
        hardenoptions.hardening(parser.parse_args(["--max-connections", "-1"]), {})


def test_the_connection_cap_stays_within_the_descriptors_left() -> None:
    cap, backlog = connection_limits(1000)
    assert 8 <= cap <= 1000 and backlog >= 8


def test_without_the_protocol_deadlines_a_body_that_stops_coming_reads_as_a_disconnect() -> None:
    seen: list[Message] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        seen.append(await receive())

    async def trickle() -> None:
        arrived = asyncio.Event()  # never set: the rest of the body never comes

        async def receive() -> Message:
            if not seen:
                return {"type": "http.request", "body": b"{", "more_body": True}
            await arrived.wait()
            return {"type": "http.request", "body": b"}", "more_body": False}

        async def send(_: Message) -> None:
            return None

        await BodyDeadline(endpoint, 0.05)({"type": "http"}, receive, send)

    asyncio.run(asyncio.wait_for(trickle(), 10))
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect"]


def test_once_the_body_is_in_receive_is_the_servers_own_again() -> None:
    seen: list[Message] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        seen.append(await receive())  # a stream waiting for the client to leave: no deadline now

    async def run() -> None:
        calls = 0

        async def receive() -> Message:
            nonlocal calls
            calls += 1
            if calls == 1:
                return {"type": "http.request", "body": b"{}", "more_body": False}
            await asyncio.sleep(0.2)  # the client leaves later than the body deadline
            return {"type": "http.disconnect", "from": "the server"}

        async def send(_: Message) -> None:
            return None

        await BodyDeadline(endpoint, 0.05)({"type": "http"}, receive, send)

    asyncio.run(run())
    assert seen[1] == {"type": "http.disconnect", "from": "the server"}  # not the deadline's own disconnect
