"""Resource subscriptions in both protocol eras, fed by the engine's change feed.

2025-11-25 clients call ``resources/subscribe``; we keep their sessions per URI and notify them on
their connection's standalone channel. 2026-07-28 clients open ``subscriptions/listen`` streams,
served by the SDK's `ListenHandler` over our `InMemorySubscriptionBus`. Every committed change is
published to both as ``notifications/resources/updated`` for each resource it touches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import quote

from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated, ServerEvent

from handoff.accel import gate
from handoff.ports import Change

log = logging.getLogger(__name__)

SESSIONS_URI = "handoff://sessions"


def session_uri(key: str) -> str:
    """The URI of a session resource."""
    return f"handoff://sessions/{quote(key, safe='')}"


def context_uri(key: str) -> str:
    """The URI of a session's context resource."""
    return f"handoff://context/{quote(key, safe='')}"


def handoff_uri(hid: str) -> str:
    """The URI of a handoff resource."""
    return f"handoff://handoffs/{quote(hid, safe='')}"


def inbox_uri(agent: str) -> str:
    """The URI of an agent's inbox resource."""
    return f"handoff://agents/{quote(agent, safe='')}/inbox"


def touched_uris(change: Change) -> list[str]:
    """Every resource a committed change alters."""
    uris = [SESSIONS_URI, session_uri(change.session_key), context_uri(change.session_key)]
    uris += [handoff_uri(hid) for hid in change.handoff_ids]
    uris += [inbox_uri(agent) for agent in change.agents]
    return uris


class _CountedBus(InMemorySubscriptionBus):
    """The SDK's in-memory bus, counting its live subscriptions (it offers no public way to ask)."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions = 0

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Register `listener`; the returned unsubscribe stays idempotent."""
        unsubscribe = super().subscribe(listener)
        self.subscriptions += 1
        live = True

        def once() -> None:
            nonlocal live
            if live:
                live = False
                self.subscriptions -= 1
            unsubscribe()

        return once


class Notifier:
    """Fans committed changes out to subscribers of both protocol eras.

    With nobody subscribed a change costs nothing: publishing is a task and, per URI, a checkpoint
    of the bus, which without this check was a tenth of the server's time under a write load.
    """

    def __init__(self, *, on_close: bool = True) -> None:
        """`on_close=False`: forget a legacy subscriber only when it unsubscribes (the public path)."""
        self.bus = _CountedBus()
        self.listen = ListenHandler(self.bus)
        self.legacy: dict[str, set[ServerSession]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_close = _close_hook() if on_close and gate.enabled(gate.MCP_SESSION_CLOSE) else None

    def on_change(self, change: Change) -> None:
        """A `ChangeListener`: called on the event loop right after a commit; publishes in the background."""
        if not self.bus.subscriptions and not self.legacy:
            return
        task = asyncio.get_running_loop().create_task(self.publish(touched_uris(change)))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("publishing a change failed", exc_info=task.exception())

    async def publish(self, uris: list[str]) -> None:
        """Send ``notifications/resources/updated`` for each URI to whoever subscribed to it."""
        for uri in uris:
            await self.bus.publish(ResourceUpdated(uri=uri))
            for session in list(self.legacy.get(uri, ())):
                await session.send_resource_updated(uri)

    def subscriber_count(self) -> int:
        """Legacy-era subscriptions currently held (for metrics)."""
        return sum(len(s) for s in self.legacy.values())

    async def subscribe(self, session: ServerSession, uri: str) -> None:
        """Remember a legacy subscriber until it unsubscribes or its connection closes."""
        subscribers = self.legacy.setdefault(uri, set())
        if session in subscribers:
            return
        subscribers.add(session)
        if self._on_close is not None:
            self._on_close(session, self.unsubscribe, session, uri)

    def unsubscribe(self, session: ServerSession, uri: str) -> None:
        """Forget a legacy subscriber."""
        subscribers = self.legacy.get(uri)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del self.legacy[uri]


def _close_hook() -> Callable[..., None]:
    from handoff.accel.mcp_session_close import on_close  # only now: it uses this SDK version's private names

    return on_close
