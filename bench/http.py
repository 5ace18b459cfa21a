"""Benchmark of MCP over streamable HTTP: N concurrent clients calling update_context against `handoff serve`.

    python -m bench.http [--clients 16] [--seconds 20] [--content 1024] [--url URL] [--load raw|aiohttp]
                         [--auth none|token] [--token TOKEN]

Starts its own `handoff serve --port 0` on a scratch data dir unless --url is given. Each client is
its own MCP session (2025-11-25 handshake, or 2026-07-28 envelopes with --era). The handshake and
register_session go through aiohttp; the measured update_context calls go through one of two load
generators, both in this process (the server is another), both sharing this machine's cores with it:

* ``raw`` (default): wrk-style. One asyncio protocol per keep-alive connection writes pre-built
  request bytes (only the JSON-RPC id and Content-Length change per call) and sends the next call
  from the callback that completes the previous reply: no tasks, no futures, no HTTP library.
  On a 2-core box it leaves most of a core to the server, so it measures the server.
* ``aiohttp``: raw JSON-RPC over aiohttp (TCP_NODELAY), as a light real client would; its own CPU
  (~0.5 ms per call) competes with the server's, so it reports less than the server can do.

Both check every reply (HTTP 200 and ``"isError":false``). Prints calls/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx2

LEGACY = "2025-11-25"
MODERN = "2026-07-28"


def _start_server(data_dir: Path, auth: str = "none", metrics: str = "full") -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "handoff", "serve", "--port", "0", "--data-dir", str(data_dir), "--auth", auth],
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HANDOFF_LOG_LEVEL": "WARNING", "HANDOFF_METRICS": metrics},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = data_dir / "engine.json"
        if info.exists():
            url = json.loads(info.read_text())["url"]
            try:
                if httpx2.get(url.replace("/mcp", "/readyz")).status_code == 200:
                    return proc, url
            except httpx2.HTTPError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not become ready in 30 s")


def _cpu_seconds(pid: int) -> Callable[[], float] | None:
    """The user+system CPU seconds of a process so far, read from /proc (None where there is no /proc)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return None
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    return read


def _message(body: str) -> dict[str, Any]:
    for line in body.splitlines():
        if line.startswith("data:"):
            return json.loads(line[5:])  # type: ignore[no-any-return]
    return json.loads(body)  # type: ignore[no-any-return]


class Client:
    """One MCP session."""

    def __init__(self, http: aiohttp.ClientSession, url: str, era: str, token: str | None = None) -> None:
        self.http, self.url, self.ids, self.era = http, url, 0, era
        self.headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if token is not None:
            self.headers["authorization"] = f"Bearer {token}"

    async def _post(self, method: str, params: dict[str, Any], notify: bool = False) -> dict[str, Any]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        headers = self.headers
        if not notify:
            self.ids += 1
            msg["id"] = self.ids
        if self.era == MODERN:
            params["_meta"] = _modern_meta()
            headers = {**headers, "mcp-protocol-version": MODERN, "mcp-method": method, "mcp-name": params["name"]}
        async with self.http.post(self.url, data=json.dumps(msg), headers=headers) as response:
            response.raise_for_status()
            if "mcp-session-id" in response.headers:
                self.headers["mcp-session-id"] = response.headers["mcp-session-id"]
            text = await response.text()
        return {} if notify else _message(text)

    async def open(self) -> None:
        if self.era == MODERN:
            return  # no handshake: every request carries its envelope
        await self._post("initialize", {
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"},
        })
        self.headers["mcp-protocol-version"] = LEGACY
        await self._post("notifications/initialized", {}, notify=True)

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        reply = await self._post("tools/call", {"name": tool, "arguments": arguments})
        result = reply["result"]
        if result.get("isError"):
            raise RuntimeError(result["structuredContent"])
        return result  # type: ignore[no-any-return]


async def _worker(client: Client, key: str, content: str, until: float, latencies: list[float]) -> None:
    while time.perf_counter() < until:
        start = time.perf_counter()
        await client.call("update_context", {"sessionKey": key, "contextType": "message", "content": content})
        latencies.append(time.perf_counter() - start)


class _RawCall:
    """Pre-built bytes of one session's update_context request; only the id (and so the length) varies."""

    _MARK = 987654321987

    def __init__(self, url: str, headers: dict[str, str], arguments: dict[str, Any], era: str) -> None:
        parts = urlsplit(url)
        params: dict[str, Any] = {"name": "update_context", "arguments": arguments}
        fields = {**headers, "host": parts.netloc, "connection": "keep-alive"}
        if era == MODERN:
            params["_meta"] = _modern_meta()
            fields |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "update_context"}
        body = json.dumps({"jsonrpc": "2.0", "method": "tools/call", "params": params, "id": self._MARK}).encode()
        self.before, self.after = body.split(b"%d" % self._MARK)
        lines = [f"POST {parts.path or '/'} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items()]
        self.head = ("\r\n".join(lines) + "\r\ncontent-length: ").encode()
        self.ids = 0

    def next(self) -> bytes:
        self.ids += 1
        body = b"%s%d%s" % (self.before, self.ids, self.after)
        return b"%s%d\r\n\r\n%s" % (self.head, len(body), body)


class _RawConnection(asyncio.Protocol):
    """One keep-alive connection that sends the next call as soon as the previous reply is complete."""

    def __init__(self, call: _RawCall, until: float, latencies: list[float], done: asyncio.Future[None]) -> None:
        self.call, self.until, self.latencies, self.done = call, until, latencies, done
        self.buffer = b""
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent = time.perf_counter()
        self.transport.write(self.call.next())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        length = -1
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
        if length < 0:
            return self._fail(f"a reply without Content-Length: {head[:200]!r}")
        if len(self.buffer) < end + 4 + length:
            return
        body, self.buffer = self.buffer[end + 4 : end + 4 + length], self.buffer[end + 4 + length :]
        now = time.perf_counter()
        if not head.startswith(b"http/1.1 200") or b'"isError":false' not in body:
            return self._fail(f"a failed call: {head[:12]!r} {body[:300]!r}")
        self.latencies.append(now - self.sent)
        if now < self.until:
            self._send()
        elif not self.done.done():
            self.done.set_result(None)

    def _fail(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(why))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"the server closed the connection ({exc})")


async def _raw_phase(calls: list[_RawCall], url: str, seconds: float) -> tuple[list[float], float]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    latencies: list[float] = []
    start = time.perf_counter()
    dones: list[asyncio.Future[None]] = []
    transports = []
    for call in calls:
        done: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda c=call, d=done: _RawConnection(c, start + seconds, latencies, d),  # type: ignore[misc]
            parts.hostname or "127.0.0.1",
            parts.port or 80,
        )
        transports.append(transport)
        dones.append(done)
    try:
        await asyncio.gather(*dones)
    finally:
        for transport in transports:
            transport.close()
    return latencies, time.perf_counter() - start


def _modern_meta() -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    }


async def run(
    url: str,
    clients: int,
    seconds: float,
    content_size: int,
    era: str,
    load: str = "raw",
    token: str | None = None,
    server_cpu: Callable[[], float] | None = None,
) -> None:
    """Open the sessions, warm up, then measure."""
    connector = aiohttp.TCPConnector(limit=clients * 2)
    content = "x" * content_size
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        sessions = [Client(http, url, era, token) for _ in range(clients)]
        await asyncio.gather(*(c.open() for c in sessions))
        run_id = os.urandom(4).hex()
        keys = [f"bench-{run_id}-{i}" for i in range(clients)]
        for key, c in zip(keys, sessions, strict=True):
            await c.call("register_session", {"sessionKey": key, "agentFrom": "bench"})
        if load == "aiohttp":
            warm: list[float] = []
            await asyncio.gather(*(
                _worker(c, key, content, time.perf_counter() + 2, warm) for key, c in zip(keys, sessions, strict=True)
            ))
            latencies: list[float] = []
            start = time.perf_counter()
            await asyncio.gather(*(
                _worker(c, key, content, start + seconds, latencies) for key, c in zip(keys, sessions, strict=True)
            ))
            elapsed = time.perf_counter() - start
    if load == "raw":
        arguments = [{"sessionKey": key, "contextType": "message", "content": content} for key in keys]
        calls = [_RawCall(url, c.headers, a, era) for c, a in zip(sessions, arguments, strict=True)]
        await _raw_phase(calls, url, 2)
        cpu_before = server_cpu() if server_cpu else 0.0
        latencies, elapsed = await _raw_phase(calls, url, seconds)
        if server_cpu:  # CPU the server spent per call: a figure the other processes on the machine do not move
            print(f"server CPU per call: {(server_cpu() - cpu_before) / len(latencies) * 1e6:,.0f} µs")
    q = statistics.quantiles(latencies, n=100)
    rate = len(latencies) / elapsed
    auth = "token" if token else "none"
    print(f"{era}, {load} load, auth {auth}, {clients} clients, {content_size} B content, {elapsed:.1f}s: "
          f"{rate:,.0f} calls/s; "
          f"latency p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")


def main() -> None:
    """Start a server if needed and run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--content", type=int, default=1024)
    parser.add_argument("--era", choices=(LEGACY, MODERN), default=LEGACY, help="the protocol era the clients speak")
    parser.add_argument("--url", help="an already running server's MCP URL")
    parser.add_argument("--load", choices=("raw", "aiohttp"), default="raw", help="the load generator (see above)")
    parser.add_argument("--auth", choices=("none", "token"), default="none", help="serve --auth (a token is issued)")
    parser.add_argument(
        "--metrics", choices=("full", "basic"), default="full",
        help="the server's HANDOFF_METRICS: basic leaves out the per-call series, to measure what they cost",
    )  # fmt: skip
    parser.add_argument("--token", help="with --url: a bearer token of agent 'bench'")
    args = parser.parse_args()
    proc = None
    url = args.url
    data = tempfile.TemporaryDirectory(prefix="handoff-bench-http-")  # the server's store, removed after
    try:
        token = args.token
        if url is None:
            if args.auth == "token":
                from handoff.tokens import data_dir_store

                token = data_dir_store(Path(data.name)).create("bench", "agent", None)[1]
            proc, url = _start_server(Path(data.name), args.auth, args.metrics)
        cpu = None if proc is None else _cpu_seconds(proc.pid)
        asyncio.run(run(url, args.clients, args.seconds, args.content, args.era, args.load, token, cpu))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        data.cleanup()


if __name__ == "__main__":
    main()
