"""The /mcp fast path answers exactly as the SDK's streamable-HTTP transport does, and refuses what it refuses.

Two apps over one engine (fixed clock) are served in-process by uvicorn: one with the fast path, one
without. The same raw JSON-RPC exchanges go to both; their statuses, headers and bodies must match
(the session keys and session ids, which must differ, are substituted first).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp import Client
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from handoff.accel import mcp_fastpath as fastpath
from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel.types import Limits
from handoff.mcp import guard, http
from handoff.mcp.deps import Deps
from handoff.mcp.server import build_server
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from handoff.storage.kv import RocksKeyValue
from integration.harness import LEGACY, MODERN, MODES, expected_protocol, ok, refused

pytestmark = pytest.mark.anyio

ERAS = (LEGACY, MODERN)
ACCEPT = "application/json, text/event-stream"
EVENT_ID = re.compile(r"[0-9a-f]{32}")
COMPARED_HEADERS = ("content-type", "cache-control", "x-accel-buffering", "mcp-session-id", "allow")


@dataclass
class Spy:
    """Records what the fast path hands to the SDK: the JSON-RPC method of a POST, else the HTTP method."""

    app: Callable[[Scope, Receive, Send], Awaitable[None]]
    seen: list[str] = field(default_factory=list)
    direct: int = 0  # tools/call answered without the SDK's kernel

    @property
    def delegated(self) -> int:
        return len(self.seen)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            self.seen.append(scope["method"])
            return await self.app(scope, receive, send)
        first = await receive()  # the fast path has read the whole body, so it replays it in one message
        try:
            self.seen.append(str(json.loads(first.get("body", b"")).get("method")))
        except (ValueError, AttributeError):
            self.seen.append("POST")
        replayed = [first]

        async def replay() -> Any:
            return replayed.pop() if replayed else await receive()

        await self.app(scope, replay, send)


@dataclass
class Served:
    url: str
    spy: Spy | None = None
    path: fastpath.FastPath | None = None


@dataclass
class Pair:
    fast: Served
    sdk: Served
    deps: Deps


@dataclass
class Peer:
    """A raw JSON-RPC client of one server, in one era."""

    http: httpx2.AsyncClient
    url: str
    era: str
    headers: dict[str, str] = field(default_factory=dict)
    ids: int = 0

    async def open(self) -> None:
        self.headers = {"accept": ACCEPT, "content-type": "application/json"}
        if self.era == MODERN:
            return
        reply = await self.http.post(self.url, headers=self.headers, content=json.dumps({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        }))  # fmt: skip
        assert reply.status_code == 200, reply.text
        self.headers["mcp-session-id"] = reply.headers["mcp-session-id"]
        self.headers["mcp-protocol-version"] = LEGACY
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await self.http.post(self.url, headers=self.headers, content=json.dumps(note))).status_code == 202

    async def request(
        self, method: str, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx2.Response:
        self.ids += 1
        params = dict(params)
        extra: dict[str, str] = {}
        if self.era == MODERN:
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            }
            extra = {"mcp-protocol-version": MODERN, "mcp-method": method}
            name = params.get("name", params.get("uri"))
            if isinstance(name, str):
                extra["mcp-name"] = name
        body = json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params})
        return await self.http.post(self.url, headers={**self.headers, **extra, **(headers or {})}, content=body)


def _deps(engine: Engine) -> Deps:
    service = EmbeddedService(engine)
    notifier = Notifier()
    service.add_listener(notifier.on_change)
    return Deps(commands=service, reads=service, limits=engine.limits, metrics=Metrics(), notifier=notifier)


@asynccontextmanager
async def _serving(app: Starlette) -> AsyncIterator[str]:
    sock = http.bind("127.0.0.1", 0)
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, http="httptools", ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    try:
        yield http.url_of(sock)
    finally:
        server.should_exit = True
        await task


def _spy_on(app: Starlette) -> tuple[fastpath.FastPath, Spy]:
    tracked = app.routes[0].endpoint  # type: ignore[attr-defined]
    guarded = tracked.app
    assert isinstance(guarded, guard.PrincipalGuard)  # the rate limit and the session cap come first
    fast = guarded.app
    assert isinstance(fast, fastpath.FastPath)
    spy = Spy(fast.sdk)
    fast.sdk = spy
    direct = fast.direct
    assert direct is not None
    plain_call = direct.call

    async def counted_call(version: str, params: Any) -> dict[str, Any]:
        spy.direct += 1
        return await plain_call(version, params)

    direct.call = counted_call  # type: ignore[method-assign]
    return fast, spy


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    kv = RocksKeyValue(str(tmp_path / "db"))
    engine = Engine(kv, limits=Limits(), clock=lambda: "2026-01-02T03:04:05.678Z")
    await engine.start()
    deps = _deps(engine)
    fast_app = http.build_app(build_server(deps), deps, http.Activity(), "127.0.0.1")
    sdk_app = http.build_app(build_server(deps), deps, http.Activity(), "127.0.0.1", fast_path=False)
    path, spy = _spy_on(fast_app)
    try:
        async with _serving(fast_app) as fast_url, _serving(sdk_app) as sdk_url:
            yield Pair(Served(fast_url, spy, path), Served(sdk_url), deps)
    finally:
        await engine.stop()
        kv.close()


@asynccontextmanager
async def _peers(pair: Pair, era: str) -> AsyncIterator[tuple[Peer, Peer]]:
    async with httpx2.AsyncClient(timeout=10) as client:
        fast, sdk = Peer(client, pair.fast.url, era), Peer(client, pair.sdk.url, era)
        await fast.open()
        await sdk.open()
        yield fast, sdk


def _shape(reply: httpx2.Response, subs: dict[str, str]) -> tuple[int, dict[str, str], str]:
    """Status, the headers that matter, and the body with `subs` swapped and event ids masked (they are random)."""
    text = EVENT_ID.sub("<event id>", _swap(reply.text, subs))
    headers = {name: subs.get(value, value) for name in COMPARED_HEADERS if (value := reply.headers.get(name))}
    return reply.status_code, headers, text


async def _same(fast: Peer, sdk: Peer, method: str, params: dict[str, Any], subs: dict[str, str]) -> str:
    """Send one request to both servers (the fast one with `subs` keys swapped in); the answers must be equal."""
    fast_params = json.loads(_swap(json.dumps(params), subs))
    fast_reply = await fast.request(method, fast_params)
    sdk_reply = await sdk.request(method, params)
    sids = {fast.headers.get("mcp-session-id", "-"): sdk.headers.get("mcp-session-id", "-")}
    back = {new: old for old, new in subs.items()} | sids
    assert _shape(fast_reply, back) == _shape(sdk_reply, {}), f"{method} {params}"
    return sdk_reply.text


def _swap(text: str, subs: dict[str, str]) -> str:
    for old, new in subs.items():
        text = text.replace(old, new)
    return text


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("tools/call", {"name": "get_session", "arguments": {"sessionKey": "KEY"}}),
    ("tools/call", {"name": "register_session", "arguments": {
        "sessionKey": "KEY", "agentFrom": "agent-ü€\u2028", "metadata": {"f": 1.5e300, "g": 0.1, "h": 1e16, "n": -0.0},
    }}),
    ("tools/call", {"name": "register_session", "arguments": {"sessionKey": "KEY", "agentFrom": "again"}}),
    ("tools/call", {"name": "update_context", "arguments": {
        "sessionKey": "KEY", "contextType": "message", "content": "x" * 1024 + "\u0000\u001f</script>",
    }}),
    ("tools/call", {"name": "update_context", "arguments": {
        "sessionKey": "KEY", "contextType": "nope", "content": "x",
    }}),
    ("tools/call", {"name": "get_session", "arguments": {"sessionKey": "KEY"}}),
    ("tools/call", {"name": "get_context", "arguments": {"sessionKey": "KEY", "limit": 5}}),
    ("tools/call", {"name": "get_session", "arguments": {"sessionKey": "KEY", "extra": 1}}),
    ("tools/call", {"name": "no_such_tool", "arguments": {}}),
    ("tools/call", {"name": "get_session", "arguments": ["not", "an", "object"]}),
    ("tools/call", {"name": "get_session"}),
    ("tools/list", {}),
    ("resources/list", {}),
    ("resources/templates/list", {}),
    ("resources/read", {"uri": "handoff://sessions/KEY"}),
    ("resources/read", {"uri": "handoff://sessions/missing-KEY"}),
    ("prompts/list", {}),
    ("prompts/get", {"name": "continue_from_handoff", "arguments": {"handoffId": "missing-KEY"}}),
]  # fmt: skip


@pytest.mark.parametrize("era", ERAS)
async def test_the_fast_path_answers_byte_for_byte_as_the_sdk_does(pair: Pair, era: str, uid: str) -> None:
    assert pair.fast.spy is not None
    sdk_key, fast_key = f"S{uid}", f"F{uid}"
    async with _peers(pair, era) as (fast, sdk):
        before, direct = pair.fast.spy.delegated, pair.fast.spy.direct
        for method, params in CALLS:
            await _same(fast, sdk, method, json.loads(json.dumps(params).replace("KEY", sdk_key)), {sdk_key: fast_key})
        assert pair.fast.spy.delegated == before, "every call above should have been answered by the fast path"
        tool_calls = [p for m, p in CALLS if m == "tools/call" and isinstance(p.get("arguments", {}), dict)]
        assert pair.fast.spy.direct - direct == len(tool_calls), "well-formed tools/call should skip the kernel"


@pytest.mark.parametrize("era", ERAS)
async def test_a_tool_call_is_counted_in_the_metrics_once_on_the_fast_path(pair: Pair, era: str, uid: str) -> None:
    counter = pair.deps.metrics.requests.labels(tool="get_session", code="SESSION_NOT_FOUND")
    async with _peers(pair, era) as (fast, _):
        start = _count(counter)
        reply = await fast.request("tools/call", {"name": "get_session", "arguments": {"sessionKey": f"m{uid}"}})
        assert reply.status_code == 200
        assert _count(counter) == start + 1


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    ("header", "value", "status"), [("host", "evil.example:80", 421), ("origin", "http://evil.example", 403)]
)
async def test_a_foreign_host_or_origin_is_refused_on_the_fast_path(
    pair: Pair, era: str, header: str, value: str, status: int, uid: str
) -> None:
    params = {"name": "get_session", "arguments": {"sessionKey": f"h{uid}"}}
    async with _peers(pair, era) as (fast, sdk):
        fast_reply = await fast.request("tools/call", params, headers={header: value})
        sdk_reply = await sdk.request("tools/call", params, headers={header: value})
    assert fast_reply.status_code == sdk_reply.status_code == status
    assert fast_reply.text == sdk_reply.text


@pytest.mark.parametrize("sid", ["0123456789abcdef0123456789abcdef", "not a session"])
async def test_an_unknown_session_id_is_refused_as_the_sdk_refuses_it(pair: Pair, sid: str, uid: str) -> None:
    params = {"name": "get_session", "arguments": {"sessionKey": f"u{uid}"}}
    async with _peers(pair, LEGACY) as (fast, sdk):
        fast.headers["mcp-session-id"] = sdk.headers["mcp-session-id"] = sid
        fast_reply = await fast.request("tools/call", params)
        sdk_reply = await sdk.request("tools/call", params)
    assert fast_reply.status_code == sdk_reply.status_code == 404
    assert fast_reply.text == sdk_reply.text


async def test_a_deleted_session_is_refused_as_the_sdk_refuses_it(pair: Pair, uid: str) -> None:
    params = {"name": "get_session", "arguments": {"sessionKey": f"d{uid}"}}
    async with _peers(pair, LEGACY) as (fast, sdk):
        for peer in (fast, sdk):
            assert (await peer.http.delete(peer.url, headers=peer.headers)).status_code == 200
        fast_reply = await fast.request("tools/call", params)
        sdk_reply = await sdk.request("tools/call", params)
    assert fast_reply.status_code == sdk_reply.status_code == 404
    assert fast_reply.text == sdk_reply.text


REFUSED_IN_BOTH_ERAS = [
    ({"accept": "application/json"}, "SSE not accepted"),
    ({"content-type": "text/plain"}, "not JSON"),
    ({"mcp-protocol-version": "2099-01-01"}, "unsupported version"),
]
REFUSED_IN_2026 = [
    ({"mcp-method": "tools/list"}, "method header mismatch"),
    ({"mcp-name": "get_context"}, "name header mismatch"),
]
CASES = [(LEGACY, *case) for case in REFUSED_IN_BOTH_ERAS] + [
    (MODERN, *case) for case in REFUSED_IN_BOTH_ERAS + REFUSED_IN_2026
]


@pytest.mark.parametrize(("era", "headers", "what"), CASES)
async def test_requests_the_sdk_refuses_are_left_to_the_sdk(
    pair: Pair, era: str, headers: dict[str, str], what: str, uid: str
) -> None:
    assert pair.fast.spy is not None
    params = {"name": "get_session", "arguments": {"sessionKey": f"r{uid}"}}
    async with _peers(pair, era) as (fast, sdk):
        before = pair.fast.spy.delegated
        fast_reply = await fast.request("tools/call", params, headers=headers)
        sdk_reply = await sdk.request("tools/call", params, headers=headers)
        assert pair.fast.spy.delegated == before + 1, what
    sid = {fast.headers.get("mcp-session-id", "-"): sdk.headers.get("mcp-session-id", "-")}
    assert _shape(fast_reply, sid) == _shape(sdk_reply, {}), what
    assert fast_reply.status_code >= 400, what


async def test_a_session_takes_the_fast_path_from_its_initialize_on(pair: Pair) -> None:
    assert pair.fast.spy is not None
    async with httpx2.AsyncClient(timeout=10) as client:
        headers = {"accept": ACCEPT, "content-type": "application/json"}
        hello = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}
        opened = await client.post(pair.fast.url, headers=headers, content=json.dumps(init))
        headers |= {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": LEGACY}
        before = pair.fast.spy.delegated
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        reply = await client.post(pair.fast.url, headers=headers, content=json.dumps(listing))
        assert reply.status_code == 200
        assert pair.fast.spy.delegated == before  # initialize recorded the client: tools/list may go fast


@pytest.mark.parametrize("mode", MODES)
async def test_the_official_client_works_through_the_fast_path(pair: Pair, mode: str, uid: str) -> None:
    assert pair.fast.spy is not None
    async with Client(pair.fast.url, mode=mode, cache=None) as client:
        assert client.protocol_version == expected_protocol(mode)
        before = pair.fast.spy.delegated
        await ok(client, "register_session", {"sessionKey": f"c{uid}", "agentFrom": "a"})
        await ok(client, "update_context", {"sessionKey": f"c{uid}", "contextType": "message", "content": "hi"})
        await refused(client, "get_session", {"sessionKey": f"missing{uid}"}, "SESSION_NOT_FOUND")
        assert "tools/call" not in pair.fast.spy.seen[before:], pair.fast.spy.seen


async def test_fast_calls_keep_a_session_from_idling_out_and_an_idle_one_still_ends(pair: Pair, uid: str) -> None:
    assert pair.fast.path is not None
    pair.fast.path.manager.session_idle_timeout = 1.0  # for the sessions opened from now on
    params = {"name": "get_session", "arguments": {"sessionKey": f"i{uid}"}}
    async with _peers(pair, LEGACY) as (fast, _):
        for _ in range(6):  # 1.8 s of calls 0.3 s apart: longer than the idle timeout
            assert (await fast.request("tools/call", params)).status_code == 200
            await asyncio.sleep(0.3)
        end = asyncio.get_running_loop().time() + 10
        while (status := (await fast.request("tools/call", params)).status_code) == 200:
            assert asyncio.get_running_loop().time() < end, "an idle session should have ended"
            await asyncio.sleep(1.5)
        assert status == 404


def _count(counter: Any) -> float:
    """A labelled counter's value, as a scrape would read it."""
    return next(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))
