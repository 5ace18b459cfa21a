"""With ``--auth token`` the /mcp fast path still answers authenticated calls, under the caller's principal.

The app is served in-process by uvicorn over a real engine, with the SDK's bearer middleware in front;
the SDK app behind the fast path is spied on, so a call it had to take is seen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from handoff.accel import mcp_fastpath as fastpath
from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel.types import Limits
from handoff.mcp import http
from handoff.mcp.auth import Auth, StoreVerifier
from handoff.mcp.deps import Deps
from handoff.mcp.server import build_server
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from handoff.storage.kv import RocksKeyValue
from handoff.tokens import FileTokenStore
from integration.harness import LEGACY, MODERN

pytestmark = pytest.mark.anyio

ACCEPT = "application/json, text/event-stream"


@dataclass
class Spy:
    """Counts the POSTs the fast path leaves to the SDK app."""

    app: ASGIApp
    posts: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST":
            self.posts += 1
        await self.app(scope, receive, send)


@dataclass
class Site:
    url: str
    spy: Spy
    tokens: dict[str, str] = field(default_factory=dict)


def _fast_path_in(app: ASGIApp) -> fastpath.FastPath:
    """The FastPath behind the auth middleware of /mcp."""
    node: Any = app
    while not isinstance(node, fastpath.FastPath):
        node = node.app
    return node


@asynccontextmanager
async def _serving(app: Starlette, sock: Any) -> AsyncIterator[None]:
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, http="httptools", ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    kv = RocksKeyValue(str(tmp_path / "db"))
    engine = Engine(kv, limits=Limits())
    await engine.start()
    service = EmbeddedService(engine)
    notifier = Notifier()
    service.add_listener(notifier.on_change)
    deps = Deps(commands=service, reads=service, limits=engine.limits, metrics=Metrics(), notifier=notifier)
    store = FileTokenStore(tmp_path / "tokens.json")
    tokens = {agent: store.create(agent, "agent", None)[1] for agent in ("alice", "mallory")}
    sock = http.bind("127.0.0.1", 0)
    url = http.url_of(sock)
    app = http.build_app(
        build_server(deps), deps, http.Activity(), "127.0.0.1", auth=Auth(StoreVerifier(store)), url=url
    )
    fast = _fast_path_in(app.routes[0].endpoint.app)  # type: ignore[attr-defined]
    spy = Spy(fast.sdk)
    fast.sdk = spy
    try:
        async with _serving(app, sock):
            yield Site(url, spy, tokens)
    finally:
        await engine.stop()
        kv.close()


async def _call(client: httpx2.AsyncClient, site: Site, agent: str, name: str, arguments: dict[str, Any]) -> Any:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    }
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": meta},
    }
    headers = {
        "accept": ACCEPT,
        "content-type": "application/json",
        "authorization": f"Bearer {site.tokens[agent]}",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": name,
    }
    reply = await client.post(site.url, headers=headers, content=json.dumps(body))
    assert reply.status_code == 200, reply.text
    return reply.json()["result"]["structuredContent"]


async def test_authenticated_tool_calls_take_the_fast_path_as_their_principal(site: Site, uid: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as client:
        registered = await _call(client, site, "alice", "register_session", {"sessionKey": uid})
        assert registered["session"]["agentFrom"] == "alice"
        refused = await _call(client, site, "mallory", "get_session", {"sessionKey": uid})
        assert refused["code"] == "SESSION_NOT_FOUND"
        impersonation = await _call(
            client, site, "mallory", "register_session", {"sessionKey": "x" + uid, "agentFrom": "alice"}
        )
        assert impersonation["code"] == "NOT_PERMITTED"
    assert site.spy.posts == 0, "an authenticated tools/call was handed to the SDK's transport"


async def test_a_legacy_session_serves_its_own_token_on_the_fast_path_and_nobody_else(site: Site) -> None:
    hello = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    base = {"accept": ACCEPT, "content-type": "application/json"}
    alice = {**base, "authorization": f"Bearer {site.tokens['alice']}"}
    async with httpx2.AsyncClient(timeout=10) as client:
        opened = await client.post(
            site.url,
            headers=alice,
            content=json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}),
        )
        sid = opened.headers["mcp-session-id"]
        alice |= {"mcp-session-id": sid, "mcp-protocol-version": LEGACY}
        note = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert (await client.post(site.url, headers=alice, content=note)).status_code == 202
        before = site.spy.posts
        listing = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
        assert (await client.post(site.url, headers=alice, content=listing)).status_code == 200
        assert site.spy.posts == before, "the session's own token should keep the fast path"
        mallory = {**alice, "authorization": f"Bearer {site.tokens['mallory']}"}
        assert (await client.post(site.url, headers=mallory, content=listing)).status_code == 404
        assert (
            await client.post(site.url, headers={**alice, "authorization": "Bearer nope"}, content=listing)
        ).status_code == 401
