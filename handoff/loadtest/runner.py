"""Runs a load test: opens the clients, runs each phase's scenarios until its deadline, samples the server."""

from __future__ import annotations

import os
import sys
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from handoff.loadtest import server
from handoff.loadtest.progress import Progress
from handoff.loadtest.scenarios import LOOPS, MIX, SCENARIOS, TRANSPORT_ERRORS, Worker, register
from handoff.loadtest.stats import Call

REQUIRED_TOOLS = frozenset({"register_session", "update_context", "request_handoff"})
LIFECYCLE_TOOLS = frozenset({"accept_handoff", "complete_handoff"})
GRACE = 10.0
"""Seconds a phase waits past its deadline for calls in flight before cancelling them (they are not counted)."""


@dataclass(frozen=True)
class Options:
    """What to load and how."""

    url: str | None  # streamable HTTP
    command: list[str] | None  # stdio: one server process per client
    clients: int
    seconds: float
    scenario: str  # "mix", "all", or one of SCENARIOS
    mode: str = "auto"  # the MCP client's protocol negotiation: "auto" or "legacy"
    pid: int | None = None
    metrics_url: str | None = None
    server_log: TextIO | None = None  # where stdio servers' stderr goes
    processes: int = 1  # load-tester processes sharing the clients (handoff.loadtest.multi)

    @property
    def target(self) -> str:
        """The URL, or the command line."""
        return self.url if self.url is not None else " ".join(self.command or [])


@dataclass(frozen=True)
class Phase:
    """One stretch of the run: which scenario each client ran, and when."""

    name: str
    scenarios: tuple[str, ...]  # per client
    started: float  # seconds since the run started
    ended: float


@dataclass
class Outcome:
    """Everything a report needs."""

    options: Options
    run_id: str
    tools: list[str]
    lifecycle: bool
    calls: list[Call] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    server: dict[str, Any] | None = None
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0  # this process's CPU over the run: a saturated client limits throughput

    def add(self, call: Call) -> None:
        """Record one call (the scenarios' sink)."""
        self.calls.append(call)


class LoadTestError(Exception):
    """The load test could not run (no connection, not an AI Handoff server)."""


def process_cpu() -> float:
    """CPU seconds this process (every thread of it) has used."""
    times = os.times()
    return times.user + times.system


def plan(scenario: str, clients: int) -> list[tuple[str, tuple[str, ...]]]:
    """The phases of a run: (name, the scenario of each client)."""
    if scenario == "mix":
        return [("mix", tuple(MIX[i % len(MIX)] for i in range(clients)))]
    names = SCENARIOS if scenario == "all" else (scenario,)
    return [(name, ("sequential",) if name == "sequential" else (name,) * clients) for name in names]


def open_client(options: Options) -> Client:
    """An MCP client over HTTP, or over stdio to a new server process."""
    if options.url is not None:
        return Client(options.url, mode=options.mode, cache=None)
    command = options.command or []
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    errlog = options.server_log if options.server_log is not None else sys.stderr
    return Client(stdio_client(params, errlog=errlog), mode=options.mode, cache=None)


async def tool_names(client: Client) -> list[str]:
    """Every tool the server lists (all pages)."""
    names: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        listed = await client.list_tools(cursor=cursor)
        names += [tool.name for tool in listed.tools]
        cursor = listed.next_cursor
        if not cursor:
            break
    return names


async def connect(stack: AsyncExitStack, options: Options, count: int) -> list[Client]:
    """Open `count` clients (one after another: each client's task group belongs to this task)."""
    clients = []
    for _ in range(count):
        try:
            clients.append(await stack.enter_async_context(open_client(options)))
        except TRANSPORT_ERRORS as exc:
            raise LoadTestError(f"cannot connect to {options.target}: {type(exc).__name__}: {exc}") from exc
    return clients


async def open_run(
    stack: AsyncExitStack, options: Options, count: int, run_id: str | None = None
) -> tuple[list[Client], Outcome]:
    """Connect `count` clients (at least one) and check the server speaks the AI Handoff tools."""
    clients = await connect(stack, options, max(count, 1))
    tools = await tool_names(clients[0])
    missing = REQUIRED_TOOLS - set(tools)
    if missing:
        raise LoadTestError(f"{options.target} lacks the AI Handoff tools {sorted(missing)}")
    run_id = run_id or uuid.uuid4().hex[:8]
    return clients, Outcome(options, run_id, sorted(tools), LIFECYCLE_TOOLS <= set(tools))


async def run(options: Options, progress: Progress) -> Outcome:
    """Run every phase against the server and return what was recorded."""
    phases = plan(options.scenario, options.clients)
    async with AsyncExitStack() as stack:
        clients, outcome = await open_run(stack, options, max(len(p[1]) for p in phases))
        source = await server.discover(options.url, options.pid, options.metrics_url)
        sampler = server.Sampler(source) if source is not None else None
        origin, cpu = time.perf_counter(), process_cpu()
        progress.start(total=options.seconds * len(phases), count=lambda: len(outcome.calls))
        async with anyio.create_task_group() as background:
            if sampler is not None:
                background.start_soon(sampler.run)
            background.start_soon(progress.run)
            for name, scenarios in phases:
                outcome.phases.append(await run_phase(outcome, clients, name, scenarios, origin))
            background.cancel_scope.cancel()
        outcome.seconds = time.perf_counter() - origin
        outcome.client_cpu_seconds = process_cpu() - cpu
        progress.finish()
        if sampler is not None:
            outcome.server = sampler.summary(local=options.pid is not None or server.is_loopback(options.url or ""))
    return outcome


def shared_key(run_id: str, phase: str) -> str:
    """The session every client of a phase's shared-session scenario appends to."""
    return f"lt-{run_id}-{phase}-shared"


async def run_phase(
    outcome: Outcome,
    clients: list[Client],
    name: str,
    scenarios: tuple[str, ...],
    origin: float,
    *,
    start: float | None = None,
    offset: int = 0,
    register_shared: bool = True,
) -> Phase:
    """Every client runs its scenario for the phase's seconds (from `start`, a perf_counter() time, if given).

    `offset` is the index of this process's first client among all the run's clients; `register_shared`
    is False when another process registered the phase's shared session already.
    """
    if start is not None:
        await anyio.sleep(max(0.0, start - time.perf_counter()))
    started = time.perf_counter() if start is None else start
    deadline = started + outcome.options.seconds
    workers = [
        Worker(clients[i], offset + i, outcome.run_id, scenario, origin, deadline, outcome, outcome.lifecycle)
        for i, scenario in enumerate(scenarios)
    ]
    key = shared_key(outcome.run_id, name)
    if "shared-session" in scenarios and register_shared:
        opener = Worker(clients[0], 0, outcome.run_id, "shared-session", origin, deadline, outcome, outcome.lifecycle)
        await register(opener, key, "lt-agent-shared")
    for worker in workers:
        worker.shared_key = key
    with anyio.move_on_after(max(0.0, deadline - time.perf_counter()) + GRACE):
        async with anyio.create_task_group() as group:
            for worker in workers:
                group.start_soon(LOOPS[worker.scenario], worker)
    return Phase(name, scenarios, started - origin, time.perf_counter() - origin)
