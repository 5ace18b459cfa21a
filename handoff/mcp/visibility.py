"""The read model as one principal may see it: the one place every read is filtered (CONTRACT §7).

Tools, resources, the prompt and both eras of subscriptions read through `visible(deps)`, on HTTP,
stdio and Kafka mode alike (they differ only in the `ReadModel` behind it). Without a principal
(``--auth none``, stdio) it is the read model itself. The rules are `handoff.kernel.access`'s; a
session the principal may not see reads as absent, so the callers answer SESSION_NOT_FOUND (or
"resource not found") and never leak that it exists.
"""

from __future__ import annotations

from collections.abc import Callable

from handoff.kernel.access import may_read_inbox, may_see_handoff, may_see_session
from handoff.kernel.package import PackageEntry
from handoff.kernel.principal import Principal
from handoff.mcp.auth import current_principal
from handoff.mcp.deps import Deps
from handoff.ports import ReadModel
from projections.lifecycle import with_lifecycle
from projections.queries import Page
from projections.views import HandoffView, SessionView


def sees(principal: Principal | None, view: SessionView) -> bool:
    """Whether the principal may read this session."""
    return may_see_session(principal, view.agent_from, view.holder, view.members)


class Visible:
    """The queries a principal's calls make, answering only what it may see."""

    def __init__(self, reads: ReadModel, principal: Principal | None, clock: Callable[[], str]) -> None:
        self.reads, self.principal, self.clock = reads, principal, clock

    async def session(self, key: str, as_of: int | None = None) -> SessionView | None:
        """The session (as of a version), or None if it does not exist or may not be seen now."""
        if self.principal is None:
            return self._lifecycle(await self.reads.session(key, as_of))
        live = await self.reads.session(key)
        if live is None or not sees(self.principal, live):
            return None
        return self._lifecycle(live if as_of is None else await self.reads.session(key, as_of))

    def _lifecycle(self, view: SessionView | None) -> SessionView | None:
        return None if view is None else with_lifecycle(view, self.clock())

    async def handoff(self, hid: str) -> HandoffView | None:
        """The handoff, or None if it does not exist or may not be seen."""
        view = await self.reads.handoff(hid)
        if view is None or self.principal is None or await self._sees_handoff(view, {}):
            return view
        return None

    async def _sees_handoff(self, view: HandoffView, seen: dict[str, bool]) -> bool:
        visible = seen.get(view.session_key)
        if visible is None:
            session = await self.reads.session(view.session_key)
            visible = seen[view.session_key] = session is not None and sees(self.principal, session)
        return may_see_handoff(self.principal, view.target_agent, view.status, visible)

    async def package_entries(self, view: HandoffView) -> list[PackageEntry]:
        """The entries of a handoff's package (the handoff was read through `handoff`)."""
        return await self.reads.package_entries(view)

    async def list_sessions(
        self, agent: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[SessionView]:
        """Sessions, newest first; an agent principal lists among its own (a page may come back short)."""
        p = self.principal
        if p is not None and p.role == "agent" and agent is None:
            agent = p.agent  # the participant index holds every session it may see
        page = await self.reads.list_sessions(agent, status, limit, cursor)
        now = self.clock()
        return Page([with_lifecycle(v, now) for v in page.items if p is None or sees(p, v)], page.next_cursor)

    async def list_handoffs(
        self, target: str | None, source: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[HandoffView]:
        """Handoffs, newest first, of sessions it may see, and the open ones addressed to it."""
        page = await self.reads.list_handoffs(target, source, status, limit, cursor)
        if self.principal is None:
            return page
        seen: dict[str, bool] = {}
        return Page([v for v in page.items if await self._sees_handoff(v, seen)], page.next_cursor)

    def inbox(self, agent: str) -> bool:
        """Whether the principal may read `agent`'s inbox."""
        return may_read_inbox(self.principal, agent)

    async def uri(self, uri: str) -> bool:
        """Whether the principal may read (and so subscribe to) a resource URI; unknown URIs say yes."""
        from handoff.mcp import resources  # resources reads through this module

        if self.principal is None:
            return True
        if (m := resources.SESSION.match(uri) or resources.CONTEXT.match(uri)) is not None:
            return await self.session(str(m["sessionKey"])) is not None
        if (m := resources.HANDOFF.match(uri)) is not None:
            return await self.handoff(str(m["handoffId"])) is not None
        if (m := resources.INBOX.match(uri)) is not None:
            return self.inbox(str(m["agentId"]))
        return True


def visible(deps: Deps) -> Visible:
    """The reads of the current call: its principal is `Deps.principal` or, outside a tool, the request's."""
    return Visible(deps.reads, deps.principal if deps.principal is not None else current_principal(), deps.clock)
