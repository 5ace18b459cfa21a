"""The job runner (CONTRACT §9): runs each enabled job every interval, or now on request, and keeps its stats.

A job is an *action*, ``async (now) -> {count: n}``, given by the composition root: the expiry
sweeps and dormancy below, the retention pass and the anchor writer registered in
`handoff.bootstrap.jobs`. There is one runner per deployment: the embedded engine's process, or in
Kafka mode each worker for the partitions it owns (its share; stats are added up when read). The
configuration is read on every tick, so a change recorded in the operations log is in force within a
tick without a restart. A run that raises is counted as failed and logged; the runner goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

import msgspec

from handoff.kernel.commands import Command, ExpireHandoff, ExpireSession
from handoff.kernel.errors import InvalidArgument
from handoff.kernel.lifecycle import is_dormant
from handoff.kernel.operations import JOBS, JobConfig, JobRun, JobStats, JobStatus, record_run
from handoff.kernel.state import SessionState
from handoff.ports import Outcome
from handoff.storage import operations as O
from handoff.storage.due import seed
from handoff.storage.keys import index_prefix
from handoff.storage.kv import KeyValue
from projections.viewstore import StoreReader

from .sweeper import SWEEP_PAGE, Sweeper

log = logging.getLogger(__name__)

Action = Callable[[str], Awaitable[dict[str, int]]]
TICK = 0.25  # seconds between looks at the configuration: how soon a change of interval or enabled takes effect
MAX_PASSES = 1000  # sweep pages one expiry run may take (100,000 sessions at the default page)


class StatsStore(Protocol):
    """Where a runner keeps its jobs' stats."""

    def load(self, job: str) -> JobStats:
        """A job's stats (zeros before its first run)."""

    def save(self, job: str, stats: JobStats) -> None:
        """Keep a job's stats."""


class KeyValueStats:
    """Stats in the embedded store, under ``J:stats:`` (`handoff.storage.operations`)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    def load(self, job: str) -> JobStats:
        """A job's stats."""
        return O.read_stats(self.kv, job)

    def save(self, job: str, stats: JobStats) -> None:
        """Keep a job's stats."""
        O.write_stats(self.kv, job, stats)


class FileStats:
    """Stats in one JSON file (a Kafka worker's data dir), replaced atomically on every save."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._all: dict[str, JobStats] = {}
        if path.exists():
            raw = json.loads(path.read_text())
            self._all = {k: msgspec.convert(v, JobStats) for k, v in raw.items()}

    def load(self, job: str) -> JobStats:
        """A job's stats."""
        return self._all.get(job, JobStats())

    def save(self, job: str, stats: JobStats) -> None:
        """Keep a job's stats (tmp file + rename: a crash leaves the old file or the new one)."""
        self._all[job] = stats
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(msgspec.json.encode(self._all))
        tmp.replace(self.path)


class JobRunner:
    """Runs the jobs of one process's share; `run()` until cancelled, `run_now(name)` on request."""

    def __init__(
        self,
        actions: Mapping[str, Action],
        config: Callable[[str], JobConfig],
        stats: StatsStore,
        clock: Callable[[], str],
        *,
        tick: float = TICK,
    ) -> None:
        missing = set(JOBS) - set(actions)
        if missing:
            raise ValueError(f"no action for the jobs {sorted(missing)}")
        self.actions, self.config, self.stats, self.clock, self.tick = actions, config, stats, clock, tick
        self._locks = {name: asyncio.Lock() for name in JOBS}
        self._last: dict[str, float] = {}  # monotonic start of each job's last run
        self.active = False  # whether `run()` is running the jobs on their intervals

    def running(self, name: str) -> bool:
        """Whether a run of the job is under way."""
        return self._locks[name].locked()

    def status(self, name: str) -> JobStatus:
        """The job's config, whether it runs now, and its stats."""
        config = self.config(name)
        return JobStatus(
            enabled=config.enabled,
            interval_seconds=config.interval_seconds,
            running=self.running(name),
            stats=self.stats.load(name),
        )

    async def run_now(self, name: str) -> JobRun:
        """Run a job at once (after a run in progress ends); its failure is recorded, then raised."""
        if name not in self.actions:
            raise InvalidArgument(f"unknown job {name!r}; the jobs are {list(JOBS)}", field="jobName")
        async with self._locks[name]:
            self._last[name] = time.monotonic()
            started, t0 = self.clock(), time.perf_counter()
            try:
                result = await self.actions[name](started)
            except Exception:  # counted, then raised (a cancelled run, e.g. at shutdown, is not counted)
                self._record(name, started, t0, ok=False)
                raise
            duration = self._record(name, started, t0, ok=True)
        return JobRun(name=name, started_at=started, duration_ms=duration, result=result)

    def _record(self, name: str, started: str, t0: float, *, ok: bool) -> float:
        duration = round((time.perf_counter() - t0) * 1000, 3)
        self.stats.save(name, record_run(self.stats.load(name), started, duration, ok))
        return duration

    def due(self, name: str) -> bool:
        """Whether the job is enabled and its interval has passed since its last run (or it never ran here)."""
        config = self.config(name)
        last = self._last.get(name)
        return config.enabled and (last is None or time.monotonic() - last >= config.interval_seconds)

    async def run(self) -> None:
        """Run every job when it falls due, until cancelled; each job in its own task, so none waits on another."""
        self.active = True
        try:
            async with asyncio.TaskGroup() as group:
                for name in JOBS:
                    group.create_task(self._loop(name), name=f"handoff-job-{name}")
        finally:
            self.active = False

    async def _loop(self, name: str) -> None:
        while True:
            if self.due(name) and not self.running(name):
                try:
                    await self.run_now(name)
                except Exception:  # the runner's guard: a failed run is counted and logged, the next one comes
                    log.exception("job %s failed", name)
            await asyncio.sleep(self.tick)


def expiry_health(runner: JobRunner) -> Callable[[], Awaitable[dict[str, object]]]:
    """The ``sweeper`` component of /healthz: degraded when the runner stopped or an expiry job's last run failed."""

    async def check() -> dict[str, object]:
        jobs = {name: runner.status(name) for name in ("session-expiry", "handoff-expiry")}
        failing = [n for n, j in jobs.items() if (j.stats.last_failure or "") > (j.stats.last_success or "")]
        healthy = runner.active and not failing
        report: dict[str, object] = {"status": "healthy" if healthy else "degraded", "running": runner.active}
        for name, job in jobs.items():
            report[name] = {"enabled": job.enabled, "lastRun": job.stats.last_run, "failedRuns": job.stats.failed_runs}
        return report

    return check


# -- the actions the engine itself provides -----------------------------------------------------------


def expiry_action(
    kv: KeyValue,
    state: Callable[[str], SessionState | None],
    submit: Callable[[Command], Awaitable[Outcome | None]],
    clock: Callable[[], str],
    kind: type[ExpireSession] | type[ExpireHandoff],
    passes: int = MAX_PASSES,
) -> Action:
    """One job run of `Sweeper` passes over the due-index that issues only `kind` of expiry.

    Passes repeat (at most `passes`) while a full page is taken and something was issued: the
    due-index entries whose expiry is the other job's stay where they are, for that job's run. Where
    `submit` only sends the command to be decided elsewhere (Kafka), give `passes=1`: until it is
    decided the entries stay due, and a second pass would send them again.
    """
    done = 0  # expiries of `kind` the writer took (Kafka: sent to the partition's writer)

    async def only(command: Command) -> Outcome | None:
        nonlocal done
        if not isinstance(command, kind):
            return None  # the other job's: its due-index entry stays for that job
        result = await submit(command)  # a refusal raises, and the sweeper judges the session again later
        done += 1
        return result

    sweeper = Sweeper(kv, state, only, clock)
    seed(kv)  # a store written before expiry existed gets its entries once (then a single get)

    async def run(now: str) -> dict[str, int]:
        nonlocal done
        done = 0
        for _ in range(passes):
            before = done
            if await sweeper.sweep() < SWEEP_PAGE or done == before:
                break
        return {"expired": done}

    return run


def dormancy_action(kv: KeyValue, clock: Callable[[], str]) -> Action:
    """Counts the active sessions that are dormant now (dormancy is a read-time flag, never an event)."""
    reader = StoreReader(kv)
    active = index_prefix("Ss", "active")

    async def run(now: str) -> dict[str, int]:
        dormant = checked = 0
        for n, (key, _) in enumerate(kv.scan(active)):
            view = reader.session(key.rsplit(b"\x00", 1)[1].decode())
            if view is not None:
                checked += 1
                at = view.last_activity_at or view.updated_at
                dormant += bool(at) and is_dormant(view.retention_policy, at, now)
            if n % 1000 == 999:
                await asyncio.sleep(0)  # a long scan lets the writer in
        return {"dormant": dormant, "active": checked}

    return run
