"""`handoff stdio`'s relay: JSON-RPC lines on stdin/stdout <-> the engine's streamable HTTP endpoint.

Transparent for both protocol eras. 2025-11-25: the ``Mcp-Session-Id`` and negotiated version of the
``initialize`` answer go on every later request; after ``notifications/initialized`` the GET stream
(server notifications outside requests) is relayed; DELETE ends the session on stdin EOF.
2026-07-28: the envelope in ``params._meta`` is mirrored into the ``MCP-Protocol-Version``,
``Mcp-Method`` and ``Mcp-Name`` headers the server requires, and ``notifications/cancelled``
aborts the request's POST. Only JSON-RPC is ever written to stdout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

import anyio
import anyio.abc
import anyio.to_thread
import httpx2
from httpx2 import EventSource

from handoff.mcp.localtrust import SECRET_HEADER

log = logging.getLogger(__name__)

# These mirror `mcp_types.PROTOCOL_VERSION_META_KEY` and `mcp.shared.inbound` (mcp 2.3.0). They are
# copied because importing the SDK costs seconds, and a client gives its first request (the
# 2026-07-28 `server/discover` probe) only 10 s before falling back to the older protocol.
PROTOCOL_VERSION_META_KEY = "io.modelcontextprotocol/protocolVersion"
NAME_BEARING_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_HEADER_SAFE = re.compile(r"^[\x20-\x7E]*$")
_B64_SENTINEL = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")

JsonObj = dict[str, Any]
Reconnect = Callable[[], Awaitable[str]]


def encode_header_value(value: str) -> str:
    """A value as an HTTP header carries it: verbatim if plain ASCII, else in the ``=?base64?...?=`` sentinel."""
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not _B64_SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def _valid_id(rid: object) -> bool:
    """JSON-RPC ids are strings or numbers; anything else (an object, an array, a boolean) is refused, not relayed."""
    return isinstance(rid, str | int | float) and not isinstance(rid, bool)


def _error(rid: Any, code: int, message: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}).encode()


class Relay:
    """One stdio client's connection to the engine."""

    def __init__(
        self,
        url: str,
        client: httpx2.AsyncClient,
        tg: anyio.abc.TaskGroup,
        out: BinaryIO,
        reconnect: Reconnect | None = None,
    ) -> None:
        self.url = url
        self.reconnect = reconnect
        self.reconnect_lock = anyio.Lock()
        self.client = client
        self.tg = tg
        self.out = out
        self.out_lock = anyio.Lock()
        self.session_id: str | None = None
        self.legacy_version: str | None = None
        self.get_started = False
        self.inflight: dict[Any, tuple[anyio.CancelScope, bool]] = {}  # request id -> (scope, modern?)

    async def write(self, raw: bytes) -> None:
        """Write one JSON-RPC message as one line."""
        line = raw.strip().replace(b"\n", b"")
        async with self.out_lock:
            self.out.write(line + b"\n")
            self.out.flush()

    def headers_for(self, msg: JsonObj) -> dict[str, str]:
        """The HTTP headers a message needs in its era."""
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        params = msg.get("params") if isinstance(msg.get("params"), dict) else None
        meta = params.get("_meta") if params else None
        modern = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
        if modern is not None and "method" in msg:
            headers["mcp-protocol-version"] = str(modern)
            headers["mcp-method"] = str(msg["method"])
            key = NAME_BEARING_METHODS.get(msg["method"])
            if key and params and isinstance(params.get(key), str):
                headers["mcp-name"] = encode_header_value(params[key])
        elif self.legacy_version and msg.get("method") != "initialize":
            headers["mcp-protocol-version"] = self.legacy_version
        return headers

    async def handle_line(self, line: str) -> None:
        """Relay one line read from stdin."""
        try:
            msg = json.loads(line)
        except ValueError:
            await self.write(_error(None, -32700, "Parse error"))
            return
        if not isinstance(msg, dict):
            await self.write(_error(None, -32600, "Invalid request"))
            return
        if "id" in msg and not _valid_id(msg["id"]):
            await self.write(_error(None, -32600, "Invalid request: an id is a string or a number"))
            return
        if "method" in msg and "id" in msg:
            self.tg.start_soon(self.post_request, msg)
            return
        if msg.get("method") == "notifications/cancelled":
            params = msg.get("params")
            cancelled = params.get("requestId") if isinstance(params, dict) else None
            entry = self.inflight.get(cancelled) if _valid_id(cancelled) else None
            if entry is not None and entry[1]:  # 2026-07-28: cancelling is aborting the POST
                entry[0].cancel()
                return
        await self.post_oneway(msg)
        if msg.get("method") == "notifications/initialized" and self.session_id and not self.get_started:
            self.get_started = True
            self.tg.start_soon(self.get_stream)

    async def post_oneway(self, msg: JsonObj) -> None:
        """A notification or a response to a server request: nothing comes back."""
        try:
            resp = await self.client.post(self.url, content=json.dumps(msg), headers=self.headers_for(msg))
        except httpx2.HTTPError as exc:
            log.warning("engine unreachable", extra={"error": repr(exc)})
            return
        if resp.status_code >= 400:
            log.warning("one-way message refused", extra={"status": resp.status_code, "body": resp.text[:200]})

    async def post_request(self, msg: JsonObj) -> None:
        """POST a request and relay its answer (JSON, or an SSE stream ending with the answer)."""
        rid = msg["id"]
        headers = self.headers_for(msg)
        answered = False
        with anyio.CancelScope() as scope:
            self.inflight[rid] = (scope, "mcp-method" in headers)
            try:
                answered = await self._send(msg, headers)
            except (httpx2.HTTPError, ValueError) as exc:
                log.warning("request to the engine failed", extra={"method": msg.get("method"), "error": repr(exc)})
            finally:
                self.inflight.pop(rid, None)
        if not answered and not scope.cancel_called:
            await self.write(_error(rid, -32603, "handoff stdio: the engine gave no answer"))

    async def _send(self, msg: JsonObj, headers: dict[str, str]) -> bool:
        """Exchange a request; if the engine is gone, find or start another and try once more.

        A 2026-07-28 client does not notice; a 2025-11-25 session does not survive the engine, so its
        client gets the new engine's "session not found" and has to reconnect.
        """
        try:
            return await self._exchange(msg, headers)
        except httpx2.ConnectError:
            if self.reconnect is None:
                raise
        gone = self.url
        async with self.reconnect_lock:
            if self.url == gone:  # no other request has reconnected meanwhile
                log.warning("the engine is gone; finding or starting another", extra={"url": gone})
                self.url = await self.reconnect()
        return await self._exchange(msg, headers)

    async def _exchange(self, msg: JsonObj, headers: dict[str, str]) -> bool:
        rid = msg["id"]
        answered = False
        async with self.client.stream("POST", self.url, content=json.dumps(msg), headers=headers) as resp:
            if msg.get("method") == "initialize" and resp.headers.get("mcp-session-id"):
                self.session_id = resp.headers["mcp-session-id"]
            if resp.headers.get("content-type", "").startswith("text/event-stream"):
                async for sse in EventSource(resp):
                    if sse.event == "message" and sse.data:
                        out = json.loads(sse.data)
                        if out.get("id") == rid and ("result" in out or "error" in out):
                            self._note_initialize(msg, out)
                            answered = True
                        await self.write(sse.data.encode())
                return answered
            body = await resp.aread()
            if not body.strip():
                log.warning("empty answer", extra={"status": resp.status_code})
                return False
            out = json.loads(body)
            if isinstance(out, dict) and "error" in out and out.get("id") != rid:
                # The transport refused the request (e.g. 404 for an unknown session) under another
                # id; answer the client's request with that error, or it would wait forever.
                out["id"] = rid
                body = json.dumps(out).encode()
            self._note_initialize(msg, out)
            await self.write(body)
            return isinstance(out, dict) and out.get("id") == rid

    def _note_initialize(self, request: JsonObj, response: JsonObj) -> None:
        if request.get("method") == "initialize" and isinstance(response.get("result"), dict):
            self.legacy_version = response["result"].get("protocolVersion")

    async def get_stream(self) -> None:
        """2025-11-25: the standalone SSE stream of server notifications, reconnected if it drops."""
        backoff = 0.2
        while self.session_id:
            headers = {"accept": "text/event-stream", "mcp-session-id": self.session_id}
            if self.legacy_version:
                headers["mcp-protocol-version"] = self.legacy_version
            try:
                async with self.client.stream("GET", self.url, headers=headers) as resp:
                    if resp.status_code >= 400:
                        log.warning("no notification stream", extra={"status": resp.status_code})
                        return
                    backoff = 0.2
                    async for sse in EventSource(resp):
                        if sse.event == "message" and sse.data:
                            await self.write(sse.data.encode())
            except httpx2.HTTPError as exc:
                log.info("notification stream dropped", extra={"error": repr(exc)})
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        """End the 2025-11-25 session, if any."""
        if self.session_id:
            with anyio.move_on_after(5):
                try:
                    await self.client.delete(self.url, headers={"mcp-session-id": self.session_id})
                except httpx2.HTTPError:
                    pass
        self.session_id = None


MAX_LINE = 16 * 1024 * 1024  # 1 MiB of content, JSON-escaped, fits many times over


def _read_line(stream: BinaryIO) -> bytes | None:
    """The next line of `stream` (None at its end); an over-long line is skipped and read as empty ``b""``."""
    line = stream.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) <= MAX_LINE or line.endswith(b"\n"):
        return line
    while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
        pass  # skipped: memory stays bounded whatever a client sends
    return b""


async def run(url: str, reconnect: Reconnect | None = None, secret: str | None = None) -> None:
    """Relay stdin to the engine at `url` until stdin closes or SIGINT/SIGTERM arrives.

    `reconnect` finds or starts an engine again when this one has gone away (each proved to hold the
    data dir's `secret` before it is used); `secret` goes with every request.
    """
    timeout = httpx2.Timeout(30.0, read=None)  # no read timeout: notification streams stay quiet for long
    done = anyio.Event()
    signalled: list[int] = []

    def on_signal(sig: int) -> None:
        signalled.append(sig)
        done.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    headers = {SECRET_HEADER: secret} if secret else {}
    client = httpx2.AsyncClient(timeout=timeout, trust_env=False, headers=headers)
    async with client, anyio.create_task_group() as tg:
        relay = Relay(url, client, tg, sys.stdout.buffer, reconnect)

        async def pump() -> None:
            while True:
                line = await anyio.to_thread.run_sync(_read_line, sys.stdin.buffer)
                if line is None:
                    break
                if not line:
                    await relay.write(_error(None, -32600, f"Invalid request: a line over {MAX_LINE} bytes"))
                elif line.strip():
                    await relay.handle_line(line.decode("utf-8", errors="replace"))
            done.set()

        tg.start_soon(pump)
        await done.wait()
        await relay.close()
        if signalled:
            # stdin is read in a thread that no cancellation can interrupt: leave without it.
            logging.shutdown()
            os._exit(0)
        tg.cancel_scope.cancel()
