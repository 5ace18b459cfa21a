"""The jobs of a Kafka worker (CONTRACT §9): one runner over the partitions it owns, and their HTTP routes.

Its configuration is the operations topic's (`streams.operations.OperationsFeed`), so a change made
through any adapter is in force here within a long poll. The expiry jobs are the `Sweeper` passes of
each owned partition's store, issued through `streams.sweeps.PartitionSweeps.sender` to the
partition's writer; dormancy counts each store's dormant sessions; retention issues each owned partition's
due `EraseSession` commands the same way (`handoff.engine.erasure.erase_due`, with the configured
``eraseAfterDays``); the anchor (and a retention that replaces the built-in one) are the actions the
composition root passes (`handoff.bootstrap.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from handoff.engine.erasure import erase_due
from handoff.engine.jobs import Action, FileStats, JobRunner, dormancy_action, expiry_action
from handoff.kernel.commands import Command, ExpireHandoff, ExpireSession
from handoff.kernel.errors import HandoffError
from handoff.kernel.operations import JOBS, OperationsState, erase_after_days, limits_of
from handoff.kernel.types import Limits
from streams.operations import OperationsFeed
from streams.partition import PartitionStore

log = logging.getLogger("handoff.worker")

Stores = Callable[[], Mapping[int, PartitionStore]]
Sender = Callable[[int], Callable[[Command], Any]]
ActionFactory = Callable[[Stores, Callable[[], OperationsState]], Action]
"""An action over the worker's stores and its fold of the operations log, e.g. its anchor (which pins both)."""


async def nothing_anchored(now: str) -> dict[str, int]:
    """The anchor job without `--anchor-dir`."""
    return {"written": 0}


class WorkerJobs:
    """The worker's share of the jobs: the runner, its configuration feed, and the limits it applies."""

    def __init__(
        self,
        feed: OperationsFeed,
        stores: Stores,
        sender: Sender,
        clock: Callable[[], str],
        stats_path: Path,
        extra: Mapping[str, ActionFactory] | None = None,
        on_limits: Callable[[Limits], None] | None = None,
    ) -> None:
        self.feed, self.stores, self.sender, self.clock = feed, stores, sender, clock
        factories = dict(extra or {})
        actions: dict[str, Action] = {
            "session-expiry": self._expiry(ExpireSession),
            "handoff-expiry": self._expiry(ExpireHandoff),
            "dormancy": self._dormancy,
            "retention": factories["retention"](stores, self._state) if "retention" in factories else self._retention,
            "anchor": factories["anchor"](stores, self._state) if "anchor" in factories else nothing_anchored,
        }
        self.runner = JobRunner(actions, lambda name: self.feed.state.job(name), FileStats(stats_path), clock)
        self.on_limits = on_limits
        self._task: asyncio.Task[None] | None = None
        feed.hooks.append(self._apply)

    async def start(self) -> None:
        """Read the operations log, then run the jobs until `stop`."""
        await self.feed.start()
        self._task = asyncio.create_task(self.runner.run(), name="handoff-worker-jobs")

    async def stop(self) -> None:
        """Stop the jobs (a run in flight is abandoned: what it issued was issued) and the feed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.feed.stop()

    def _state(self) -> OperationsState:
        """The operations log as this worker has folded it so far."""
        return self.feed.state

    def _apply(self, state: OperationsState) -> None:
        limits = limits_of(state.configuration)
        for store in self.stores().values():
            store.limits = limits  # kept for the engine a catch-up or a key load builds afresh
        if self.on_limits is not None:
            self.on_limits(limits)
        if state.version:
            logging.getLogger().setLevel(str(state.configuration["monitoring"].get("logLevel", "INFO")))

    def _expiry(self, kind: type[ExpireSession] | type[ExpireHandoff]) -> Action:
        async def run(now: str) -> dict[str, int]:
            expired = 0
            for p, store in list(self.stores().items()):
                states = _states_of(store)
                action = expiry_action(store.kv, states, self.sender(p), self.clock, kind, passes=1)
                expired += (await action(now))["expired"]
            return {"expired": expired}

        return run

    async def _retention(self, now: str) -> dict[str, int]:
        """Erase the sessions of this worker's partitions whose configured ``eraseAfterDays`` ran out.

        Each EraseSession goes through the commands topic to the partition's writer (as the sweeps do),
        carrying the version it was judged at; ``erased`` counts the erasures issued. A second owner's
        (or a second run's) command for the same session is refused by the kernel: nothing is erased twice.
        """
        days = erase_after_days(self.feed.state)
        total = {"checked": 0, "erased": 0, "refused": 0}
        for p, store in list(self.stores().items()):
            for name, count in (await erase_due(store.kv, _states_of(store), self.sender(p), now, days)).items():
                total[name] += count
        return total

    async def _dormancy(self, now: str) -> dict[str, int]:
        total: dict[str, int] = {"dormant": 0, "active": 0}
        for store in list(self.stores().values()):
            for name, count in (await dormancy_action(store.kv, self.clock)(now)).items():
                total[name] += count
        return total

    def routes(self, app: web.Application) -> None:
        """``GET /jobs`` (this worker's share: running and stats) and ``POST /jobs/run`` ({"job": name})."""
        app.router.add_get("/jobs", self._status)
        app.router.add_post("/jobs/run", self._run)

    async def _status(self, request: web.Request) -> web.Response:
        jobs = {name: {"running": self.runner.running(name), "stats": self.runner.stats.load(name)} for name in JOBS}
        return web.json_response(body=msgspec.json.encode({"jobs": jobs}))

    async def _run(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            run = await self.runner.run_now(str(body.get("job")))
        except HandoffError as exc:
            return web.json_response(body=msgspec.json.encode({"error": exc.to_dict()}))
        except Exception as exc:  # the job failed here: counted as failed; the caller hears why
            log.exception("job %s failed", body.get("job"))
            return web.json_response(body=msgspec.json.encode({"error": {"code": "UNAVAILABLE", "error": str(exc)}}))
        return web.json_response(body=msgspec.json.encode({"job": run}))


def _states_of(store: PartitionStore) -> Callable[[str], Any]:
    """The decided states of a store, through its current engine (catching up replaces it)."""
    return lambda key: store.engine.state(key)
