"""Builds the job runner and the operations port of a process (the composition root's part for CONTRACT §9).

The embedded runner's retention job erases through the engine's single writer by the configured
``eraseAfterDays`` (it follows `update_configuration`); Kafka workers erase through the commands
topic (`streams.jobs.WorkerJobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from handoff.anchoroptions import AnchorOptions
from handoff.audit import anchor
from handoff.engine.engine import Engine
from handoff.engine.jobs import Action, JobRunner, KeyValueStats, dormancy_action, expiry_action
from handoff.engine.operations import EmbeddedOperations, OperationsLog
from handoff.kernel.commands import ExpireHandoff, ExpireSession
from handoff.kernel.errors import InvalidArgument
from handoff.kernel.operations import JobConfig, OperationsState, erase_after_days, limits_of
from handoff.storage.log import EventLog

log = logging.getLogger("handoff")

Heads = Callable[[], Awaitable[tuple[anchor.Heads, object, anchor.OperationsHead]]]
"""Every session's chain head, the log position, and the operations log's head."""
Stores = Callable[[], Mapping[int, Any]]  # a Kafka worker's ready partition stores, by partition


def job_defaults(anchors: AnchorOptions | None) -> dict[str, JobConfig]:
    """The process's own job defaults: the anchor job runs only where ``--anchor-dir`` is given."""
    if anchors is None:
        return {}
    return {"anchor": JobConfig(enabled=True, interval_seconds=anchors.every_seconds)}


def check_anchor_key(anchors: AnchorOptions | None) -> None:
    """ValueError, with a sentence, when ``--anchor-key`` is not an Ed25519 private key (checked at start-up)."""
    if anchors is not None:
        try:
            anchor.load_private(anchors.key)
        except (InvalidArgument, ValueError, TypeError, OSError) as exc:
            raise ValueError(f"--anchor-key {anchors.key}: {exc}") from None


def anchor_action(anchors: AnchorOptions | None, heads: Heads) -> Action:
    """The anchor job: a signed anchor of `heads` into ``--anchor-dir`` (nothing without one)."""
    if anchors is None:

        async def nowhere(now: str) -> dict[str, int]:
            return {"written": 0}

        return nowhere
    key = anchor.load_private(anchors.key)

    async def write(now: str) -> dict[str, int]:
        found, position, operations = await heads()
        path = write_anchor(anchors.folder, anchor.signed_statement(found, position, key, operations=operations))
        log.info("anchor written", extra={"path": str(path), "sessions": len(found)})
        return {"written": 1, "sessions": len(found)}

    return write


def write_anchor(folder: Path, statement: Mapping[str, object]) -> Path:
    """Write ``anchor-<time>-<position>.json`` (0600) into `folder`: a temporary file, then a rename."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = str(statement["time"]).replace(":", "").replace("-", "").replace(".", "")
    position = statement["position"]
    where = position if isinstance(position, int) else sum(int(v) for v in _offsets(position).values())
    path = folder / f"anchor-{stamp}-{where}.json"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(statement, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _offsets(position: object) -> dict[str, int]:
    """Kafka mode's position: end offsets by partition."""
    return {str(k): int(v) for k, v in position.items()} if isinstance(position, dict) else {}


def apply_monitoring(state: OperationsState) -> None:
    """A recorded log level is in force at once (before any change: HANDOFF_LOG_LEVEL's)."""
    if state.version:
        level = str(state.configuration["monitoring"].get("logLevel", "INFO"))
        logging.getLogger().setLevel(level)


def embedded_jobs(engine: Engine, anchors: AnchorOptions | None) -> tuple[EmbeddedOperations, JobRunner]:
    """The embedded engine's operations and its runner, which runs the expiry sweeps instead of the engine's timer."""
    kv = engine.kv
    ops = OperationsLog(kv, engine.clock, job_defaults(anchors))

    def apply_limits(state: OperationsState) -> None:
        engine.limits = limits_of(state.configuration, engine.limits)

    ops.hooks += [apply_limits, apply_monitoring]
    for hook in ops.hooks:
        hook(ops.state)

    async def heads() -> tuple[anchor.Heads, object, anchor.OperationsHead]:
        await engine.settled()  # only what is durable: the reads below do not await
        event_log = EventLog(kv)
        return anchor.store_heads(event_log), event_log.position(), (ops.state.position, ops.state.head)

    async def retention(now: str) -> dict[str, int]:
        return await engine.erase_due(now, erase_after_days(ops.state))

    actions: dict[str, Action] = {
        "session-expiry": expiry_action(kv, engine.state, engine.submit, engine.clock, ExpireSession),
        "handoff-expiry": expiry_action(kv, engine.state, engine.submit, engine.clock, ExpireHandoff),
        "dormancy": dormancy_action(kv, engine.clock),
        "retention": retention,
        "anchor": anchor_action(anchors, heads),
    }
    runner = JobRunner(actions, ops.job_config, KeyValueStats(kv), engine.clock)
    return EmbeddedOperations(ops, runner), runner


def partition_heads(stores: Stores, operations: Callable[[], OperationsState]) -> Heads:
    """Kafka mode: the chain heads and event counts of a worker's partitions, and its operations log's head.

    `operations` gives the worker's current fold of the operations log.
    """

    async def heads() -> tuple[anchor.Heads, object, anchor.OperationsHead]:
        found: anchor.Heads = {}
        position: dict[str, int] = {}
        for p, store in sorted(stores().items()):
            event_log = EventLog(store.kv)
            found.update(anchor.store_heads(event_log))
            position[str(p)] = event_log.position()
        state = operations()
        return found, position, (state.position, state.head)

    return heads


@asynccontextmanager
async def running(runner: JobRunner) -> AsyncIterator[None]:
    """Run the jobs while the block runs."""
    task = asyncio.create_task(runner.run(), name="handoff-jobs")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
