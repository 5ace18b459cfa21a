"""`KafkaChangeFeed`: the ChangeFeed port over ``handoff.events``, for resource subscriptions.

It follows every partition of the events topic from its end when the first listener is added, and
tells each listener which session, handoffs and inboxes an event changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from handoff.kernel.codec import decode_envelope
from handoff.kernel.errors import HandoffError
from handoff.kernel.events import HandoffRequested
from handoff.ports import Change, ChangeListener
from projections.folds import affected_handoffs
from projections.views import HandoffView
from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import LONG_POLL_MS, Topics

log = logging.getLogger(__name__)


class KafkaChangeFeed:
    """Committed events, told to listeners; `handoff` looks up the agents of a handoff an event changed."""

    def __init__(
        self, bootstrap: str, topics: Topics, handoff: Callable[[str], Awaitable[HandoffView | None]], *,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.security = security
        self.topics = topics
        self._handoff = handoff
        self._listeners: list[ChangeListener] = []
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener` for every event committed to handoff.events from now on."""
        self._listeners.append(listener)
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, isolation_level="read_committed",
                enable_auto_commit=False, fetch_max_wait_ms=LONG_POLL_MS, **self.security.client_kwargs(),
            )  # fmt: skip
            self._task = asyncio.create_task(self._follow(), name="handoff-changes")

    async def stop(self) -> None:
        """Stop following the events."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    async def _follow(self) -> None:
        await self._consumer.start()
        parts = [TopicPartition(self.topics.events, p) for p in range(self.topics.partitions)]
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        while True:
            data = await self._consumer.getmany(timeout_ms=500)
            for messages in data.values():
                for m in messages:
                    await self._announce(m.value)

    async def _announce(self, value: bytes) -> None:
        env = decode_envelope(value)
        hids = tuple(affected_handoffs(env))
        agents: list[str] = []
        for hid in hids:
            if isinstance(env.event, HandoffRequested):
                pair = (env.event.target_agent, env.event.source_agent)
            else:
                try:
                    view = await self._handoff(hid)
                except HandoffError:
                    view = None
                pair = (view.target_agent, view.source_agent) if view is not None else ()  # type: ignore[assignment]
            agents += [a for a in pair if a not in agents]
        change = Change(env.session_key, env.version, env.type, hids, tuple(agents))
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                log.exception("change listener failed")
