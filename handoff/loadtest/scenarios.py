"""The original guide's load scenarios, written against the original server's tool names and camelCase arguments.

Each scenario is a loop one client runs until its phase ends. Only the tools every AI Handoff MCP
server has are required (``register_session``, ``update_context``, ``request_handoff``); the handoff
lifecycle (``accept_handoff``, ``complete_handoff``) is driven only when the server lists those tools,
so the same run works against the original TypeScript server and against handoff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import httpx2
from mcp import Client
from mcp.shared.exceptions import MCPError

from handoff.loadtest.stats import Call

SCENARIOS = ("sequential", "own-sessions", "shared-session", "handoffs")
"""sequential: one client appends to its own session, one call after another; own-sessions: N clients,
each on its own session; shared-session: N clients append to one session; handoffs: each client hands
its session back and forth while its history grows (``request_handoff`` packages ever more context)."""

MIX = ("own-sessions", "shared-session", "handoffs")
"""What the clients of the default ``mix`` run side by side (client i runs MIX[i % 3])."""

ENTRIES_PER_HANDOFF = 5
"""Context entries a ``handoffs`` client appends before each request: the history grows all run long."""

# httpx2 is the MCP SDK's HTTP transport: what its client raises when the connection fails.
TRANSPORT_ERRORS = (MCPError, httpx2.HTTPError, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError)


class Sink(Protocol):
    """Where the calls go (the run's record)."""

    def add(self, call: Call) -> None:
        """Record one call."""


@dataclass
class Worker:
    """One client's view of a phase: its connection, its names, when to stop, and where its calls are recorded."""

    client: Client
    index: int
    run_id: str
    scenario: str
    origin: float  # perf_counter() at the start of the run
    deadline: float  # perf_counter() at the end of this phase
    sink: Sink
    lifecycle: bool  # the server lists accept_handoff and complete_handoff
    shared_key: str = ""
    counter: int = field(default=0)

    def running(self) -> bool:
        """True until the phase's deadline."""
        return time.perf_counter() < self.deadline

    def key(self, what: str) -> str:
        """A session key no other run, phase or client uses."""
        return f"lt-{self.run_id}-{self.scenario}-{self.index}-{what}"

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Call a tool, record it, and return its result (None when it failed)."""
        started = time.perf_counter()
        error: str | None
        try:
            result = await self.client.call_tool(tool, args)
        except TRANSPORT_ERRORS as exc:
            error, content = type(exc).__name__, None
        else:
            content = structured(result)
            # The original server answers a failure as text {"success": false, "error": ...} without isError.
            failed = result.is_error or content.get("success") is False
            error = str(content.get("code") or "TOOL_ERROR") if failed else None
        ended = time.perf_counter()
        self.sink.add(Call(self.scenario, tool, started - self.origin, ended - started, error))
        return None if error else (content or {})

    async def append(self, key: str) -> None:
        """One ``update_context`` of a message of a few hundred characters (no ``agent``: the original has none)."""
        self.counter += 1
        text = f"step {self.counter} of client {self.index}: " + "the quick brown fox jumps over the lazy dog " * 6
        await self.call("update_context", {"sessionKey": key, "contextType": "message", "content": text})


def structured(result: Any) -> dict[str, Any]:
    """The result's structured content, else its first text block parsed as JSON (older servers), else {}."""
    content = getattr(result, "structured_content", None)
    if isinstance(content, dict):
        return content
    for block in getattr(result, "content", None) or ():
        text = getattr(block, "text", None)
        if isinstance(text, str):
            try:
                parsed = json.loads(text)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                return parsed
    return {}


async def register(worker: Worker, key: str, agent: str) -> bool:
    """Register a session for the scenario; False if the server refused."""
    args = {"sessionKey": key, "agentFrom": agent, "metadata": {"loadtest": worker.run_id}}
    return await worker.call("register_session", args) is not None


async def appends(worker: Worker) -> None:
    """The sequential and own-sessions loop: register one's own session, then append to it until the phase ends."""
    key, agent = worker.key("s"), f"lt-agent-{worker.index}"
    if not await register(worker, key, agent):
        return
    while worker.running():
        await worker.append(key)


async def shared(worker: Worker) -> None:
    """shared-session: append to the one session every client of the phase shares."""
    while worker.running():
        await worker.append(worker.shared_key)


def handoff_id(content: dict[str, Any]) -> str | None:
    """The id of the handoff a ``request_handoff`` answered with (handoff's shape, or the original's)."""
    handoff = content.get("handoff")
    if isinstance(handoff, dict) and isinstance(handoff.get("handoffId"), str):
        return str(handoff["handoffId"])
    for name in ("handoffId", "requestId"):
        if isinstance(content.get(name), str):
            return str(content[name])
    return None


async def handoffs(worker: Worker) -> None:
    """handoffs: grow the session's history, hand it to the other agent, who accepts and completes; repeat."""
    key = worker.key("h")
    holder, other = f"lt-agent-{worker.index}-a", f"lt-agent-{worker.index}-b"
    if not await register(worker, key, holder):
        return
    while worker.running():
        for _ in range(ENTRIES_PER_HANDOFF):
            await worker.append(key)
        args = {"sessionKey": key, "targetAgent": other, "requestType": "context_transfer", "requestData": {"n": 1}}
        content = await worker.call("request_handoff", args)
        hid = handoff_id(content) if content is not None else None
        if not worker.lifecycle or hid is None or not worker.running():
            continue
        if await worker.call("accept_handoff", {"handoffId": hid, "agent": other}) is None:
            continue
        await worker.call("complete_handoff", {"handoffId": hid, "agent": other, "result": {"ok": True}})
        holder, other = other, holder  # a context_transfer makes its target the session's holder


LOOPS: dict[str, Callable[[Worker], Coroutine[Any, Any, None]]] = {
    "sequential": appends,
    "own-sessions": appends,
    "shared-session": shared,
    "handoffs": handoffs,
}
