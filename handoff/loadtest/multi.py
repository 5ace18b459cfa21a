"""Several load-tester processes for one run (``--processes N``): one Python client saturates a core first.

The parent connects one client, registers the shared sessions, and starts N children
(``handoff loadtest --child RUN:OFFSET:COUNT ...``), each running its slice of the clients. Over the
children's stdin/stdout, one JSON line at a time: a child says ``ready`` once connected, the parent
answers ``go`` with a wall-clock start, so every phase starts at the same moment in every process;
a child reports its call count twice a second and, at the end, every call it made.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream

from handoff.loadtest import server
from handoff.loadtest.progress import Progress
from handoff.loadtest.runner import (
    LoadTestError,
    Options,
    Outcome,
    Phase,
    open_run,
    plan,
    process_cpu,
    run_phase,
    shared_key,
)
from handoff.loadtest.scenarios import Worker, register
from handoff.loadtest.stats import Call

READY_DEADLINE = 120.0
MAX_LINE = 1 << 30


def slices(clients: int, processes: int) -> list[tuple[int, int]]:
    """(offset, count) of each process's clients: as even as possible, none empty."""
    size = math.ceil(clients / processes)
    return [(o, min(size, clients - o)) for o in range(0, clients, size)]


def child_command(options: Options, run_id: str, offset: int, count: int) -> list[str]:
    """The command line of one child."""
    args = [sys.executable, "-m", "handoff", "loadtest", "--child", f"{run_id}:{offset}:{count}", "--quiet"]
    args += ["--clients", str(options.clients), "--seconds", repr(options.seconds), "--scenario", options.scenario]
    if options.mode == "legacy":
        args.append("--legacy")
    return [*args, options.url] if options.url is not None else [*args, "--", *(options.command or [])]


def say(message: dict[str, Any]) -> None:
    """One line to the parent."""
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def child(options: Options, spec: str) -> None:
    """A child's whole life: connect its clients, wait for the start, run its slice of every phase, report."""
    run_id, offset, count = spec.split(":")
    start, size = int(offset), int(count)
    mine = [(name, scenarios[start : start + size]) for name, scenarios in plan(options.scenario, options.clients)]
    async with AsyncExitStack() as stack:
        clients, outcome = await open_run(stack, options, max(len(s) for _, s in mine), run_id)
        say({"ready": True})
        go = float(json.loads(await anyio.to_thread.run_sync(sys.stdin.readline))["go"])
        origin, cpu = time.perf_counter() - (time.time() - go), process_cpu()
        async with anyio.create_task_group() as background:
            background.start_soon(report_counts, outcome)
            for k, (name, scenarios) in enumerate(mine):
                begin = origin + k * options.seconds
                phase = await run_phase(
                    outcome, clients, name, scenarios, origin, start=begin, offset=start, register_shared=False
                )
                outcome.phases.append(phase)
            background.cancel_scope.cancel()
    calls = [[c.scenario, c.tool, c.started, c.seconds, c.error] for c in outcome.calls]
    phases = [[p.name, p.started, p.ended] for p in outcome.phases]
    say({"calls": calls, "phases": phases, "cpu": process_cpu() - cpu})


async def report_counts(outcome: Outcome) -> None:
    """The call count, twice a second, for the parent's progress bar."""
    while True:
        await anyio.sleep(0.5)
        say({"count": len(outcome.calls)})


class Child:
    """The parent's view of one child process."""

    def __init__(self, process: anyio.abc.Process, errors: Any) -> None:
        self.process = process
        self.errors = errors  # a temporary file with the child's stderr
        self.ready = anyio.Event()
        self.count = 0
        self.result: dict[str, Any] | None = None

    async def read(self) -> None:
        """Follow the child's lines until it closes stdout."""
        assert self.process.stdout is not None
        lines = BufferedByteReceiveStream(self.process.stdout)
        try:
            while True:
                message = json.loads(await lines.receive_until(b"\n", MAX_LINE))
                self.count = message.get("count", self.count)
                if "calls" in message:
                    self.result = message
                if message.get("ready"):
                    self.ready.set()
        except (anyio.EndOfStream, anyio.IncompleteRead):
            self.ready.set()  # a child that died before it was ready must not keep the parent waiting

    def stderr(self) -> str:
        """The end of what the child wrote to stderr."""
        self.errors.seek(0)
        return str(self.errors.read().decode(errors="replace")[-3000:])


async def run_many(options: Options, progress: Progress) -> Outcome:
    """Run the load from `options.processes` child processes; merge what they recorded."""
    phases = plan(options.scenario, options.clients)
    async with AsyncExitStack() as stack:
        (client,), outcome = await open_run(stack, options, 1)
        for name, scenarios in phases:  # before any child starts appending to it
            if "shared-session" in scenarios:
                opener = Worker(client, 0, outcome.run_id, "shared-session", time.perf_counter(), 0.0, outcome, False)
                await register(opener, shared_key(outcome.run_id, name), "lt-agent-shared")
        outcome.calls = [Call(c.scenario, c.tool, 0.0, c.seconds, c.error) for c in outcome.calls]
        source = await server.discover(options.url, options.pid, options.metrics_url)
        sampler = server.Sampler(source) if source is not None else None
        children = []
        for offset, count in slices(options.clients, options.processes):
            errors = stack.enter_context(tempfile.TemporaryFile())
            command = child_command(options, outcome.run_id, offset, count)
            process = await stack.enter_async_context(
                await anyio.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
            )
            children.append(Child(process, errors))
        cpu = process_cpu()
        async with anyio.create_task_group() as readers:
            for c in children:
                readers.start_soon(c.read)
            with anyio.fail_after(READY_DEADLINE):
                for c in children:
                    await c.ready.wait()
            go = time.time() + 0.2
            for c in children:
                assert c.process.stdin is not None
                await c.process.stdin.send((json.dumps({"go": go}) + "\n").encode())
            progress.start(total=options.seconds * len(phases), count=lambda: sum(c.count for c in children))
            async with anyio.create_task_group() as background:
                if sampler is not None:
                    background.start_soon(sampler.run)
                background.start_soon(progress.run)
                for c in children:
                    await c.process.wait()
                background.cancel_scope.cancel()
        progress.finish()
        merge(outcome, children, phases, process_cpu() - cpu)
        if sampler is not None:
            outcome.server = sampler.summary(local=options.pid is not None or server.is_loopback(options.url or ""))
    return outcome


def merge(outcome: Outcome, children: list[Child], phases: list[tuple[str, tuple[str, ...]]], cpu: float) -> None:
    """The children's calls and phases in one outcome (the parent's own calls are already there)."""
    for c in children:
        if c.process.returncode != 0 or c.result is None:
            raise LoadTestError(f"a load-tester process failed (exit {c.process.returncode}):\n{c.stderr()}")
    results = [c.result for c in children if c.result is not None]
    for result in results:
        outcome.calls += [Call(s, t, started, seconds, e) for s, t, started, seconds, e in result["calls"]]
    for k, (name, scenarios) in enumerate(phases):
        starts = [r["phases"][k][1] for r in results]
        ends = [r["phases"][k][2] for r in results]
        outcome.phases.append(Phase(name, scenarios, min(starts), max(ends)))
    outcome.seconds = max(p.ended for p in outcome.phases)
    outcome.client_cpu_seconds = cpu + sum(float(r["cpu"]) for r in results)
