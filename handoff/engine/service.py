"""The embedded engine behind the ports: `CommandBus`, `ReadModel` and `ChangeFeed` on one process.

Every read first awaits `Engine.settled()` and then reads without awaiting, so it never sees a
batch that is written to the store but not yet durable.
"""

from __future__ import annotations

from handoff.engine.engine import Engine
from handoff.engine.timings import Stopwatch
from handoff.kernel.commands import Command
from handoff.kernel.events import Envelope
from handoff.kernel.package import PackageEntry
from handoff.ports import Change, ChangeListener, Outcome
from projections.folds import affected_handoffs
from projections.projector import Changes
from projections.queries import Page, Queries
from projections.views import ContextEntryView, HandoffView, SessionView, SummaryView


class EmbeddedService:
    """Implements CommandBus, ReadModel and ChangeFeed over an `Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._listeners: list[ChangeListener] = []
        engine.listeners.append(self._on_commit)

    async def submit(self, command: Command) -> Outcome:
        """Decide and commit."""
        return await self.engine.submit(command)

    def _queries(self, key: str, as_of: int | None) -> Queries:
        return self.engine.queries if as_of is None else self.engine.as_of(key, as_of)

    async def session(self, key: str, as_of: int | None = None) -> SessionView | None:
        """A session view (live from the cache, or folded as of a version)."""
        await self.engine.settled()
        with Stopwatch(self.engine.timings.read):
            if as_of is None:
                return self.engine.session_view(key)
            return self._queries(key, as_of).session(key)

    async def summary(self, key: str, as_of: int | None = None) -> SummaryView | None:
        """A summary view."""
        await self.engine.settled()
        with Stopwatch(self.engine.timings.read):
            if as_of is None:
                return self.engine.summary_view(key)
            return self._queries(key, as_of).reader.summary(key)

    async def context(
        self, key: str, after: int, limit: int, as_of: int | None = None
    ) -> tuple[list[ContextEntryView], int | None]:
        """A page of context entries."""
        await self.engine.settled()
        with Stopwatch(self.engine.timings.read):
            return self._queries(key, as_of).context(key, after, limit)

    async def handoff(self, hid: str) -> HandoffView | None:
        """A handoff view."""
        await self.engine.settled()
        with Stopwatch(self.engine.timings.read):
            return self.engine.handoff_view(hid)

    async def package_entries(self, view: HandoffView) -> list[PackageEntry]:
        """The recorded package's entries."""
        await self.engine.settled()
        with Stopwatch(self.engine.timings.read):
            return self.engine.queries.package_entries(view)

    async def list_sessions(
        self, agent: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[SessionView]:
        """Sessions newest first."""
        await self.engine.settled()
        with Stopwatch(self.engine.timings.read):
            return self.engine.queries.list_sessions(agent, status, limit, cursor)

    async def list_handoffs(
        self, target: str | None, source: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[HandoffView]:
        """Handoffs newest first."""
        await self.engine.settled()
        with Stopwatch(self.engine.timings.read):
            return self.engine.queries.list_handoffs(target, source, status, limit, cursor)

    async def ready(self) -> bool:
        """The writer runs."""
        return self.engine.running

    def add_listener(self, listener: ChangeListener) -> None:
        """Subscribe to committed changes."""
        self._listeners.append(listener)

    def _on_commit(self, envelopes: list[Envelope], changes: Changes) -> None:
        for env in envelopes:
            hids = tuple(affected_handoffs(env))
            agents: list[str] = []
            for hid in hids:
                view = changes.handoffs.get(hid) or self.engine.handoff_view(hid)
                if view is not None:
                    agents += [a for a in (view.target_agent, view.source_agent) if a not in agents]
            change = Change(env.session_key, env.version, env.type, hids, tuple(agents))
            for listener in self._listeners:
                listener(change)
