"""The worker: owns some partitions of ``handoff.commands``, decides them, keeps their views, answers reads.

`Worker` puts together its three jobs: the lifecycle of the partitions the consumer group gives it
(`streams.lifecycle`), deciding their commands (`streams.dispatcher`) and serving reads and metrics
for them (`streams.endpoint`); it announces itself on ``handoff.workers`` so that adapters find it,
and deletes the command records its transactions decided (`streams.trimming`).
Its options and its process (signals, exit codes) are the CLI's: `handoff worker` in `handoff.cli`
and `handoff.bootstrap`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from aiokafka import AIOKafkaProducer

from handoff.config import try_exclusive
from handoff.engine.ids import Clock, IdGenerator
from handoff.engine.sweeper import SWEEP_EVERY
from handoff.kernel.operations import JobConfig
from handoff.kernel.types import Limits
from streams.dispatcher import Dispatcher
from streams.endpoint import QueryEndpoint
from streams.jobs import ActionFactory, WorkerJobs
from streams.lifecycle import OwnedPartition, Partitions
from streams.metrics import PartitionState, WorkerMetrics
from streams.operations import OperationsFeed
from streams.partition import PartitionStore
from streams.security import PLAINTEXT, KafkaSecurity
from streams.sweeps import PartitionSweeps
from streams.topics import Topics, ensure_topics
from streams.trimming import TRIM_EVERY, CommandTrimmer

log = logging.getLogger("handoff.worker")
T = TypeVar("T")


@dataclass
class WorkerConfig:
    """Everything a worker is built from."""

    bootstrap: str
    data_dir: Path
    web_host: str = "127.0.0.1"
    web_port: int = 0
    advertised_url: str | None = None  # the URL announced on handoff.workers (default: http://web_host:port)
    topics: Topics = field(default_factory=Topics)
    worker_id: str = field(default_factory=lambda: f"w-{uuid.uuid4().hex[:12]}")
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], str] = field(default_factory=Clock)
    new_id: Callable[[], str] = field(default_factory=IdGenerator)
    session_timeout_ms: int = 6000
    max_batch: int = 500  # command records per transaction
    max_queued: int = 5000  # consumed records waiting for a decider, over all partitions
    kafka_accel: bool = True  # HANDOFF_KAFKA_ACCEL=0: aiokafka's public API only (see handoff.accel)
    # Partitions whose transactions may be open at once; the others queue and go next with bigger
    # batches. Eight small transactions at once made each wait on the others at the broker: with at
    # most four, bench.kafka's p50 at half load fell from 153 to 92 ms and its p99 at full load from
    # 1.7 s to 0.4-0.5 s, at the same maximum (see `--transactions`).
    transactions: int = 4
    security: KafkaSecurity = PLAINTEXT  # how its Kafka clients authenticate (streams.security)
    connect_timeout: float = 30.0  # seconds to reach Kafka and join at start-up (HANDOFF_KAFKA_CONNECT_TIMEOUT)
    sweep_every: float = SWEEP_EVERY  # the expiry jobs' default interval (whole seconds, at least 1; streams.jobs)
    job_actions: Mapping[str, ActionFactory] = field(default_factory=dict)  # retention, anchor (handoff.bootstrap)
    job_defaults: Mapping[str, JobConfig] = field(default_factory=dict)  # e.g. the anchor job's, from --anchor-every
    trim_every: float = TRIM_EVERY  # seconds between deletions of decided command records (streams.trimming)

    def set_limits(self, limits: Limits) -> None:
        """The limits partitions opened from now on decide with (a configuration change, streams.jobs)."""
        self.limits = limits


class DataDirInUse(RuntimeError):
    """Another worker process holds this data dir."""


def hold_data_dir(data_dir: Path) -> IO[str]:
    """Hold `data_dir` for this worker alone; the lock ends with the returned file (or the process).

    A second worker on the same dir would join the group, take partitions from the first, and then
    fail to open their stores (RocksDB locks each one): those partitions would not be decided at all.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = data_dir / "worker.lock"
    handle = try_exclusive(lock)
    if handle is None:
        holder = lock.read_text().strip()
        by = f"another worker (pid {holder})" if holder.isdigit() else "another worker"
        raise DataDirInUse(f"{data_dir} is in use by {by}; give each worker its own --data-dir")
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class Worker:
    """Decider, projector and query server for the partitions the group gives it."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.topics = config.topics
        self.worker_id = config.worker_id
        self.url = ""
        self.metrics = WorkerMetrics(self)
        self.trimmer = CommandTrimmer(
            config.bootstrap, self.topics.commands, security=config.security, every=config.trim_every
        )
        self.partitions = Partitions(config, self.metrics, self.trimmer)
        self.dispatcher = Dispatcher(config, self.partitions, self.metrics)
        self.sweeps = PartitionSweeps(  # no timer of its own: the expiry jobs below drive its sweeps
            config.bootstrap, self.topics, self.worker_id, self.ready_stores, config.clock, None,
            security=config.security,
        )  # fmt: skip
        sweep = max(1, round(config.sweep_every))
        defaults = {name: JobConfig(interval_seconds=sweep) for name in ("session-expiry", "handoff-expiry")}
        feed = OperationsFeed(
            config.bootstrap, self.topics.prefix, security=config.security, defaults={**defaults, **config.job_defaults}
        )
        self.jobs = WorkerJobs(
            feed, self.ready_stores, self.sweeps.sender, config.clock, config.data_dir / "jobs.json",
            config.job_actions, on_limits=config.set_limits,
        )  # fmt: skip
        self.endpoint = QueryEndpoint(self, self.metrics, routes=self.jobs.routes)
        self._announcer: Any = None
        self._held: IO[str] | None = None  # the data dir's lock
        self._lag: asyncio.Task[None] | None = None  # probing the event loop's lag

    # -- the Owner protocol of the query endpoint ------------------------------------------------

    def ready_stores(self) -> dict[int, PartitionStore]:
        """Stores of the partitions owned and prepared."""
        return self.partitions.ready_stores()

    def partition_for(self, session_key: str) -> int:
        """The partition of a session."""
        return self.topics.partition_for(session_key)

    async def in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """Run store work in a thread, which `stop` lets finish before it closes the stores."""
        return await self.partitions.in_thread(work, *args)

    def partition_states(self) -> Mapping[int, PartitionState]:
        """Every partition the group gave this worker, as the metrics show it."""
        return self.partitions.partition_states()

    @property
    def parts(self) -> dict[int, OwnedPartition]:
        """The partitions the group gave this worker, by number."""
        return self.partitions.parts

    async def release(self, partitions: list[int]) -> None:
        """Partitions leave: what the group's rebalance does (finish the batch in flight, stop their producers)."""
        await self.partitions.release(partitions)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create topics, serve queries, join the group and start deciding."""
        cfg = self.config
        self._held = hold_data_dir(cfg.data_dir)  # before joining the group: a refused worker takes nothing
        await ensure_topics(
            cfg.bootstrap, self.topics, group=self.topics.group, accel=cfg.kafka_accel, security=cfg.security
        )
        self.url = await self.endpoint.start(cfg.web_host, cfg.web_port, cfg.advertised_url)
        await self.trimmer.start()
        await self.partitions.start()
        self._announcer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap, enable_idempotence=True, acks="all", **cfg.security.client_kwargs()
        )
        await self._announcer.start()
        announcement = json.dumps({"workerId": self.worker_id, "url": self.url}).encode()
        await self._announcer.send_and_wait(self.topics.workers, announcement, key=self.worker_id.encode())
        self.dispatcher.start()
        await self.sweeps.start()
        await self.jobs.start()
        self._lag = asyncio.create_task(self.metrics.loop_lag.watch(), name="handoff-loop-lag")
        log.info("worker started", extra={"workerId": self.worker_id, "url": self.url})

    async def stop(self) -> None:
        """Leave the group (partitions move to the other workers), withdraw the announcement, close stores."""
        if self._lag is not None:
            self._lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag
        await self.jobs.stop()
        await self.sweeps.stop()
        await self.dispatcher.stop()
        await self.partitions.leave()
        await self.dispatcher.drain()
        if self._announcer is not None:
            with contextlib.suppress(Exception):
                await self._announcer.send_and_wait(self.topics.workers, None, key=self.worker_id.encode())
            await self._announcer.stop()
        await self.endpoint.stop()
        await self.partitions.close()
        await self.trimmer.stop()
        if self._held is not None:
            self._held.close()
        log.info("worker stopped", extra={"workerId": self.worker_id})
