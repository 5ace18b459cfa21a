"""Operations in Kafka mode (CONTRACT §9): the ``<prefix>.operations`` log, the workers' jobs, the adapter's port.

``<prefix>.operations`` is one partition, kept forever: the hash-chained operations log of
`handoff.kernel.operations`. Every adapter and every worker reads it from the start and follows it
(`OperationsFeed`), so a change appended through one adapter is in force on every process as soon
as its long poll returns. Two adapters appending at once both name the same head; the first in the
topic is the one applied, and the other, folding its own record and finding it not applied, decides
again against the new state (and may then be refused, e.g. VERSION_CONFLICT).

The jobs run on the workers (`WorkerJobs`): each runs every job over the partitions it owns, so the
deployment has one runner per partition, never one per adapter. Its expiry runs are the
`Sweeper` passes of `streams.sweeps` (issued to the partition's writer through the commands topic).
Each worker keeps its share's stats in ``jobs.json`` in its data dir and serves them, and runs a
job on request, at ``/jobs`` and ``/jobs/run`` on its query endpoint; the adapter (`KafkaOperations`)
adds the shares up, and asks every worker when an operator calls ``run_job_now``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from handoff.engine.operations import sections
from handoff.kernel.errors import HandoffError, InvalidArgument, Unavailable
from handoff.kernel.operations import (
    JOBS,
    JobConfig,
    JobRun,
    JobRunRequested,
    JobStats,
    JobStatus,
    OperationsEvent,
    OperationsState,
    decide_configuration,
    decide_job_config,
    decode_record,
    encode_record,
    evolve,
    initial_state,
    merge_stats,
    seal,
)
from handoff.kernel.times import format_time
from streams.directory import WorkerDirectory
from streams.partition import PartitionStore
from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import LONG_POLL_MS

log = logging.getLogger(__name__)

Hook = Callable[[OperationsState], None]
Stores = Callable[[], Mapping[int, PartitionStore]]
APPEND_ATTEMPTS = 5  # a change decided again after losing a race this often is UNAVAILABLE


def operations_topic(prefix: str) -> str:
    """The operations log of an installation."""
    return f"{prefix}.operations"


def _now() -> str:
    from datetime import UTC, datetime

    return format_time(datetime.now(UTC))


class OperationsFeed:
    """The fold of the operations topic, kept current; `append` adds a change and returns once it is applied."""

    def __init__(
        self, bootstrap: str, prefix: str, *, security: KafkaSecurity = PLAINTEXT,
        defaults: Mapping[str, JobConfig] | None = None, clock: Callable[[], str] = _now,
    ) -> None:  # fmt: skip
        self.bootstrap, self.topic, self.security, self.clock = bootstrap, operations_topic(prefix), security, clock
        self.state = initial_state(defaults or {})
        self.hooks: list[Hook] = []
        self.chain: dict[int, str] = {}  # position -> hash of every record applied (the log is small)
        self._partition = TopicPartition(self.topic, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._follower: asyncio.Task[None] | None = None
        self._offset = 0  # the next offset to fold
        self._moved = asyncio.Condition()

    async def start(self) -> None:
        """Create the topic if needed, fold it to its end, then follow it."""
        await _ensure_topic(self.bootstrap, self.topic, self.security)
        kwargs = self.security.client_kwargs()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=LONG_POLL_MS,
            **kwargs,
        )  # fmt: skip
        await self._consumer.start()
        self._consumer.assign([self._partition])
        await self._consumer.seek_to_beginning(self._partition)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, **kwargs
        )
        await self._producer.start()
        end = (await self._consumer.end_offsets([self._partition]))[self._partition]
        while self._offset < end:
            await self._apply(await self._consumer.getmany(self._partition, timeout_ms=1000))
        self._notify()
        self._follower = asyncio.create_task(self._follow(), name="handoff-operations")

    async def stop(self) -> None:
        """Stop following."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        for client in (self._producer, self._consumer):
            if client is not None:
                with contextlib.suppress(KafkaError):
                    await client.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(self._partition, timeout_ms=LONG_POLL_MS)
            except KafkaError as exc:  # the broker is away: keep the last known state, and retry
                log.warning("cannot read the operations topic", extra={"error": str(exc)})
                await asyncio.sleep(1)
                continue
            if await self._apply(batches):
                self._notify()

    async def _apply(self, batches: Mapping[TopicPartition, list[Any]]) -> bool:
        moved = False
        for records in batches.values():
            for record in records:
                self._offset = record.offset + 1
                try:
                    after = evolve(self.state, decode_record(record.value))
                except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                    log.error("an operations record could not be decoded", extra={"offset": record.offset})
                    continue
                if after is not self.state:
                    moved = True
                    self.chain[after.position] = after.head
                self.state = after
        async with self._moved:
            self._moved.notify_all()
        return moved

    def _notify(self) -> None:
        for hook in self.hooks:
            try:
                hook(self.state)
            except Exception:  # a hook must not stop the feed
                log.exception("applying an operations change failed")

    async def _until_folded(self, offset: int) -> None:
        try:
            async with self._moved:
                await asyncio.wait_for(self._moved.wait_for(lambda: self._offset > offset), 10.0)
        except TimeoutError as exc:
            raise Unavailable("the operations log could not be read back in time; retry") from exc

    async def append(self, decide: Callable[[OperationsState], OperationsEvent], actor: str) -> OperationsState:
        """Decide against the newest state, append, and wait until folded; again if another append came first."""
        assert self._producer is not None
        for _ in range(APPEND_ATTEMPTS):
            record = seal(self.state, decide(self.state), actor, self.clock())
            try:
                sent = await self._producer.send_and_wait(self.topic, encode_record(record), key=b"ops", partition=0)
            except KafkaError as exc:
                raise Unavailable(f"the operations log cannot be written ({exc}); nothing changed") from exc
            await self._until_folded(sent.offset)
            if self.chain.get(record.position) == record.hash:
                return self.state
        raise Unavailable("the operations log kept moving; retry")


async def _ensure_topic(bootstrap: str, topic: str, security: KafkaSecurity) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **security.client_kwargs())
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            configs = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
        for _ in range(100):  # a new topic's leader is named a moment after it is created
            (described,) = await admin.describe_topics([topic])
            if described["error_code"] == 0 and described["partitions"] and described["partitions"][0]["leader"] >= 0:
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


class KafkaOperations:
    """The `Operations` port of a `serve --kafka` adapter: changes through the feed, jobs on the workers."""

    def __init__(self, feed: OperationsFeed, directory: WorkerDirectory, *, timeout: float = 30.0) -> None:
        self.feed, self.directory, self.timeout = feed, directory, timeout
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Follow the operations log and open the HTTP client for the workers."""
        await self.feed.start()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def stop(self) -> None:
        """Stop."""
        if self._http is not None:
            await self._http.close()
        await self.feed.stop()

    async def _workers(self, method: str, path: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every announced worker's answer; UNAVAILABLE when none answers."""
        assert self._http is not None
        http = self._http

        async def ask(url: str) -> dict[str, Any]:
            async with http.request(method, f"{url}{path}", json=body) as resp:
                answer: dict[str, Any] = await resp.json()
            if "error" in answer:
                raise _error(answer["error"])
            return answer

        answers = await asyncio.gather(*(ask(u) for u in set(self.directory.urls.values())), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, HandoffError):
                raise answer
        found = [a for a in answers if isinstance(a, dict)]
        if not found:
            raise Unavailable("no worker answered; the jobs run on the workers: start one, then retry")
        return found

    async def job_status(self, job: str | None) -> dict[str, JobStatus]:
        """Every job's config and its stats added up over the workers (their shares of the partitions)."""
        if job is not None:
            self.feed.state.job(job)
        names = JOBS if job is None else (job,)
        shares = [a["jobs"] for a in await self._workers("GET", "/jobs")]
        status = {}
        for name in names:
            config = self.feed.state.job(name)
            stats = merge_stats(msgspec.convert(s[name]["stats"], JobStats) for s in shares if name in s)
            running = any(s.get(name, {}).get("running") for s in shares)
            status[name] = JobStatus(
                enabled=config.enabled, interval_seconds=config.interval_seconds, running=running, stats=stats
            )
        return status

    async def run_job_now(self, job: str, actor: str) -> JobRun:
        """Record the request, run the job on every worker, and add their results up."""
        self.feed.state.job(job)
        await self.feed.append(lambda _: JobRunRequested(job=job), actor)
        runs = [msgspec.convert(a["job"], JobRun) for a in await self._workers("POST", "/jobs/run", {"job": job})]
        result: dict[str, int] = {}
        for run in runs:
            for name, count in run.result.items():
                result[name] = result.get(name, 0) + count
        return JobRun(
            name=job,
            started_at=min(r.started_at for r in runs),
            duration_ms=max(r.duration_ms for r in runs),
            result=result,
        )

    async def update_job_config(self, job: str, enabled: bool | None, interval: int | None, actor: str) -> JobConfig:
        """Change a job's config on every process (each reads the operations topic)."""
        state = await self.feed.append(lambda s: decide_job_config(s, job, enabled, interval), actor)
        return state.job(job)

    async def configuration(self, section: str | None) -> tuple[dict[str, Any], int]:
        """One section (or all) and the version, as this adapter last read the log."""
        return sections(self.feed.state, section), self.feed.state.version

    async def update_configuration(
        self, section: str, values: Mapping[str, Any], expected_version: int | None, actor: str
    ) -> tuple[dict[str, Any], int]:
        """Change one section on every process."""
        state = await self.feed.append(lambda s: decide_configuration(s, section, values, expected_version), actor)
        return sections(state, section), state.version


def _error(body: Mapping[str, Any]) -> HandoffError:
    """A worker's refusal as the error it was (INVALID_ARGUMENT for an unknown job; UNAVAILABLE otherwise)."""
    if body.get("code") == "INVALID_ARGUMENT":
        return InvalidArgument(str(body.get("error")))
    return Unavailable(f"a worker could not run the job: {body.get('error')}")
