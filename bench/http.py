"""Benchmark of MCP over streamable HTTP: N concurrent clients calling update_context against `handoff serve`.

    python -m bench.http [--clients 16] [--seconds 20] [--content 1024] [--url URL]

Starts its own `handoff serve --port 0` on a scratch data dir unless --url is given. Each client is
its own MCP session (2025-11-25 handshake) speaking raw JSON-RPC over aiohttp (TCP_NODELAY, so
no Nagle/delayed-ACK stalls), so the client side stays light; it still shares this machine's cores
with the server, as a real local agent does.
Prints calls/s and latency percentiles.
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
from pathlib import Path
from typing import Any

import aiohttp
import httpx2

LEGACY = "2025-11-25"
MODERN = "2026-07-28"


def _start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "handoff", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HANDOFF_LOG_LEVEL": "WARNING"},
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


def _message(body: str) -> dict[str, Any]:
    for line in body.splitlines():
        if line.startswith("data:"):
            return json.loads(line[5:])  # type: ignore[no-any-return]
    return json.loads(body)  # type: ignore[no-any-return]


class Client:
    """One MCP session."""

    def __init__(self, http: aiohttp.ClientSession, url: str, era: str) -> None:
        self.http, self.url, self.ids, self.era = http, url, 0, era
        self.headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

    async def _post(self, method: str, params: dict[str, Any], notify: bool = False) -> dict[str, Any]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        headers = self.headers
        if not notify:
            self.ids += 1
            msg["id"] = self.ids
        if self.era == MODERN:
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
            }
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


async def run(url: str, clients: int, seconds: float, content_size: int, era: str) -> None:
    """Warm up, then measure."""
    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        sessions = [Client(http, url, era) for _ in range(clients)]
        await asyncio.gather(*(c.open() for c in sessions))
        run_id = os.urandom(4).hex()
        for i, c in enumerate(sessions):
            await c.call("register_session", {"sessionKey": f"bench-{run_id}-{i}", "agentFrom": "bench"})
        content = "x" * content_size
        warm: list[float] = []
        await asyncio.gather(*(
            _worker(c, f"bench-{run_id}-{i}", content, time.perf_counter() + 2, warm) for i, c in enumerate(sessions)
        ))
        latencies: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(
            _worker(c, f"bench-{run_id}-{i}", content, start + seconds, latencies) for i, c in enumerate(sessions)
        ))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    rate = len(latencies) / elapsed
    print(f"{era}, {clients} clients, {content_size} B content, {elapsed:.1f}s: {rate:,.0f} calls/s; "
          f"latency p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")


def main() -> None:
    """Start a server if needed and run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--content", type=int, default=1024)
    parser.add_argument("--era", choices=(LEGACY, MODERN), default=LEGACY, help="the protocol era the clients speak")
    parser.add_argument("--url", help="an already running server's MCP URL")
    args = parser.parse_args()
    proc = None
    url = args.url
    if url is None:
        proc, url = _start_server(Path(tempfile.mkdtemp(prefix="handoff-bench-http-")))
    try:
        asyncio.run(run(url, args.clients, args.seconds, args.content, args.era))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
