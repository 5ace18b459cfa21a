"""`KafkaService`: the adapter side of Kafka mode, implementing CommandBus, ReadModel and ChangeFeed.

A thin facade over its four parts, so that `serve --kafka`, the tools and the tests hold one object:
`streams.commandbus` (commands out to ``handoff.commands``, decisions back from ``handoff.replies``),
`streams.directory` (the workers announced on ``handoff.workers`` and the owner of each partition),
`streams.reads` (reads routed to the owners, scatter and gather, read-your-writes) and
`streams.changefeed` (committed events for resource subscriptions). When Kafka or the workers cannot
be reached in time → `Unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from handoff.kernel.commands import Command
from handoff.kernel.package import PackageEntry
from handoff.ports import ChangeListener, Outcome
from projections.queries import Page
from projections.views import ContextEntryView, HandoffView, SessionView, SummaryView
from streams.changefeed import KafkaChangeFeed
from streams.commandbus import KafkaCommandBus
from streams.directory import WorkerDirectory
from streams.reads import KafkaReads
from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import Topics, ensure_topics


class KafkaService:
    """The ports over Kafka and the workers' query endpoints."""

    def __init__(
        self, bootstrap: str, *, topics: Topics | None = None, timeout: float = 10.0, kafka_accel: bool = True,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.security = security  # how every client below authenticates (streams.security)
        self.kafka_accel = kafka_accel  # False: HANDOFF_KAFKA_ACCEL=0 (see handoff.accel)
        self.topics = topics or Topics()
        self.timeout = timeout
        self.directory = WorkerDirectory(bootstrap, self.topics, security=security)
        self.bus = KafkaCommandBus(bootstrap, self.topics, self.directory, timeout=timeout, security=security)
        self.reads = KafkaReads(self.directory, self.bus.written, timeout=timeout)
        self.changes = KafkaChangeFeed(bootstrap, self.topics, self.reads.handoff, security=security)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create topics if needed, connect, and start following replies and worker announcements."""
        await ensure_topics(self.bootstrap, self.topics, accel=self.kafka_accel, security=self.security)
        await self.bus.start()
        await self.directory.start()
        await self.reads.start()
        self._tasks = [
            asyncio.create_task(self.bus.follow_replies(), name="handoff-replies"),
            asyncio.create_task(self.directory.follow(), name="handoff-workers"),
            asyncio.create_task(self.bus.expire(), name="handoff-deadlines"),
        ]

    async def stop(self) -> None:
        """Disconnect."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.changes.stop()
        await self.bus.stop()
        await self.directory.stop()
        await self.reads.stop()

    async def brokers(self) -> int:
        """Brokers in a fresh metadata answer from Kafka (raises if Kafka cannot be reached)."""
        return await self.bus.brokers()

    async def ready(self) -> bool:
        """Kafka is connected and every partition has a ready worker."""
        if not self.bus.connected:
            return False
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await self.reads.refresh_owners()
        return self.directory.covers_all()

    # -- CommandBus ---------------------------------------------------------------------------------

    async def submit(self, command: Command) -> Outcome:
        """Send the command and wait for its decision; Unavailable if none comes in time."""
        return await self.bus.submit(command)

    # -- ReadModel ----------------------------------------------------------------------------------

    async def session(self, key: str, as_of: int | None = None) -> SessionView | None:
        """A session view from its owner."""
        return await self.reads.session(key, as_of)

    async def summary(self, key: str, as_of: int | None = None) -> SummaryView | None:
        """A summary view from its owner."""
        return await self.reads.summary(key, as_of)

    async def context(
        self, key: str, after: int, limit: int, as_of: int | None = None
    ) -> tuple[list[ContextEntryView], int | None]:
        """A page of context entries from the session's owner."""
        return await self.reads.context(key, after, limit, as_of)

    async def handoff(self, hid: str) -> HandoffView | None:
        """A handoff view, from whichever worker holds it."""
        return await self.reads.handoff(hid)

    async def package_entries(self, view: HandoffView) -> list[PackageEntry]:
        """The recorded package's entries, from the session's owner."""
        return await self.reads.package_entries(view)

    async def list_sessions(
        self, agent: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[SessionView]:
        """Sessions newest first, merged over every worker."""
        return await self.reads.list_sessions(agent, status, limit, cursor)

    async def list_handoffs(
        self, target: str | None, source: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[HandoffView]:
        """Handoffs newest first, merged over every worker."""
        return await self.reads.list_handoffs(target, source, status, limit, cursor)

    async def dump_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        """Every view entry of a partition, from its owner (verification and tests)."""
        return await self.reads.dump_partition(partition)

    # -- ChangeFeed and gauges ----------------------------------------------------------------------

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener` for every event committed to handoff.events from now on."""
        self.changes.add_listener(listener)

    def in_flight(self) -> float:
        """Commands sent whose decision has not come back yet (a gauge)."""
        return self.bus.in_flight()

    def worker_count(self) -> float:
        """Workers announced on the workers topic (a gauge)."""
        return self.directory.worker_count()

    def partitions_served(self) -> float:
        """Partitions that had a ready worker at the last check (a gauge)."""
        return self.directory.partitions_served()
