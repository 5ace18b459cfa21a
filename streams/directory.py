"""`WorkerDirectory`: which workers there are (the compacted ``handoff.workers`` topic) and which owns each partition.

Workers announce their query URL on ``handoff.workers`` and withdraw it when they stop; which partitions
each one has ready comes from its ``/health``, asked at most every few seconds and again whenever an
announcement changes or a read found the owner gone.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import LONG_POLL_MS, Topics

OWNERS_MAX_AGE = 2.0  # seconds the partition owners are trusted before a read asks the workers again


class WorkerDirectory:
    """The workers announced on the workers topic, and the owner of each partition at the last check."""

    def __init__(self, bootstrap: str, topics: Topics, *, security: KafkaSecurity = PLAINTEXT) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.topics = topics
        self.urls: dict[str, str] = {}  # workerId -> url, from handoff.workers
        self.owners: dict[int, str] = {}  # partition -> url, from the workers' /health
        self.checked_at = 0.0  # when the owners were last asked; 0: ask before the next read
        self._consumer: Any = None

    async def start(self) -> None:
        """Connect to the workers topic (followed from its beginning by `follow`)."""
        self._consumer = AIOKafkaConsumer(
            self.topics.workers, bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False, fetch_max_wait_ms=LONG_POLL_MS, **self.security.client_kwargs(),
        )  # fmt: skip
        await self._consumer.start()

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    async def follow(self) -> None:
        """Keep `urls` current with the announcements (runs until cancelled)."""
        while True:
            data = await self._consumer.getmany(timeout_ms=500)
            for messages in data.values():
                for m in messages:
                    wid = m.key.decode()
                    if m.value is None:
                        self.urls.pop(wid, None)
                    else:
                        self.urls[wid] = json.loads(m.value)["url"]
                    self.forget_owners()

    def forget_owners(self) -> None:
        """Ask the workers for their partitions again before the next read."""
        self.checked_at = 0.0

    def owners_stale(self) -> bool:
        """Whether the owners were last asked too long ago to route a read by them."""
        return time.monotonic() - self.checked_at > OWNERS_MAX_AGE

    async def refresh_owners(self, http: aiohttp.ClientSession) -> None:
        """Ask every announced worker which partitions it has ready."""
        owners: dict[int, str] = {}
        for url in list(self.urls.values()):
            try:
                async with http.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    body = await resp.json()
            except (aiohttp.ClientError, TimeoutError):
                continue
            for p in body["partitions"]:
                owners[int(p)] = url
        self.owners, self.checked_at = owners, time.monotonic()

    def covers_all(self) -> bool:
        """Every partition had a ready worker at the last check."""
        return set(self.owners) == set(range(self.topics.partitions))

    def worker_count(self) -> float:
        """Workers announced on the workers topic (a gauge)."""
        return float(len(self.urls))

    def partitions_served(self) -> float:
        """Partitions that had a ready worker at the last check (a gauge)."""
        return float(len(self.owners))
