"""The thirteen MCP tools: typed arguments → command or query → result struct.

Each handler raises a `HandoffError` to refuse; `handoff.mcp.tools` turns that into a tool error.

``asOfVersion`` (get_session, get_context): an unknown session is SESSION_NOT_FOUND; for a
session that exists, a version below 1 or above its current version is INVALID_ARGUMENT.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from handoff.kernel import commands as C
from handoff.kernel.errors import HandoffNotFound, InvalidArgument, LimitExceeded, SessionNotFound
from handoff.mcp import args as A
from handoff.mcp import present
from handoff.mcp import results as R
from handoff.mcp.deps import Deps
from handoff.mcp.visibility import visible
from projections.lifecycle import with_lifecycle
from projections.views import SessionView

_ActingArgs = TypeVar("_ActingArgs", C.RegisterSessionArgs, C.CloseSessionArgs, C.HandoffArgs)


def acting(deps: Deps, args: _ActingArgs) -> _ActingArgs:
    """The arguments with their acting agent: as given, else the principal's.

    INVALID_ARGUMENT when neither is there (``--auth none`` has no principal to default to).
    """
    field, name = ("agent_from", "agentFrom") if isinstance(args, C.RegisterSessionArgs) else ("agent", "agent")
    if getattr(args, field) is not None:
        return args
    if deps.principal is None:
        raise InvalidArgument(f"{name} is required: name the agent that acts", field=name)
    return msgspec.structs.replace(args, **{field: deps.principal.agent})


def check_length(field: str, value: str | None, limit: int) -> None:
    """LIMIT_EXCEEDED if a read argument is longer than its limit."""
    if value is not None and len(value) > limit:
        raise LimitExceeded(f"{field} is {len(value)} characters; the limit is {limit}", field=field, limit=limit)


def check_page(limit: int, deps: Deps) -> None:
    """LIMIT_EXCEEDED if a page size is over the configured maximum."""
    if limit > deps.limits.page_max:
        raise LimitExceeded(f"limit {limit} is over the maximum of {deps.limits.page_max}", field="limit")


async def register_session(deps: Deps, a: C.RegisterSessionArgs) -> R.RegisterSessionResult:
    """Start a session."""
    return present.registered(await deps.submit(C.command_of(acting(deps, a))))


async def update_context(deps: Deps, a: C.UpdateContextArgs) -> R.UpdateContextResult:
    """Append one context entry; without `agent` the kernel attributes it to the session's holder."""
    return present.appended(await deps.submit(C.command_of(a)))


async def request_handoff(deps: Deps, a: C.RequestHandoffArgs) -> R.HandoffResult:
    """Ask another agent to take over or help; the package is built and recorded now."""
    return present.handoff_changed(await deps.submit(C.command_of(a)))


async def accept_handoff(deps: Deps, a: C.AcceptHandoffArgs) -> R.HandoffResult:
    """The target takes the handoff."""
    return present.handoff_changed(await deps.submit_to_handoff(acting(deps, a)))


async def complete_handoff(deps: Deps, a: C.CompleteHandoffArgs) -> R.HandoffResult:
    """The accepting agent finishes the handoff."""
    return present.handoff_changed(await deps.submit_to_handoff(acting(deps, a)))


async def reject_handoff(deps: Deps, a: C.RejectHandoffArgs) -> R.HandoffResult:
    """The target declines the handoff."""
    return present.handoff_changed(await deps.submit_to_handoff(acting(deps, a)))


async def cancel_handoff(deps: Deps, a: C.CancelHandoffArgs) -> R.HandoffResult:
    """The requester withdraws the handoff."""
    return present.handoff_changed(await deps.submit_to_handoff(acting(deps, a)))


async def close_session(deps: Deps, a: C.CloseSessionArgs) -> R.CloseSessionResult:
    """Close a session; its open handoffs are cancelled."""
    return present.closed(await deps.submit(C.command_of(acting(deps, a))))


async def get_handoff(deps: Deps, a: A.GetHandoffArgs) -> R.GetHandoffResult:
    """A handoff and the package recorded when it was requested."""
    check_length("handoffId", a.handoff_id, deps.limits.key_max)
    reads = visible(deps)
    view = await reads.handoff(a.handoff_id)
    if view is None:
        raise HandoffNotFound(f"handoff {a.handoff_id!r} does not exist", handoffId=a.handoff_id)
    entries = await reads.package_entries(view)
    return R.GetHandoffResult(
        success=True, handoff=present.handoff_view(view), package=present.package_out(view.package, entries)
    )


async def session_as_of(deps: Deps, key: str, as_of: int | None) -> tuple[SessionView, int | None]:
    """The session now or as of a version, and the version to read other views at (None: live).

    See the module docstring for the errors.
    """
    check_length("sessionKey", key, deps.limits.key_max)
    live = await visible(deps).session(key)
    if live is None:
        raise SessionNotFound(f"session {key!r} does not exist", sessionKey=key)
    if as_of is None or as_of == live.version:
        return live, None
    if not 1 <= as_of <= live.version:
        raise InvalidArgument(
            f"asOfVersion {as_of} is outside 1..{live.version}, the versions session {key!r} has had",
            field="asOfVersion",
            currentVersion=live.version,
        )
    past = await deps.reads.session(key, as_of)
    if past is None:
        raise SessionNotFound(f"session {key!r} has no version {as_of}", sessionKey=key)
    return with_lifecycle(past, deps.clock()), as_of


async def get_session(deps: Deps, a: A.GetSessionArgs) -> R.GetSessionResult:
    """A session, now or as of a version."""
    view, _ = await session_as_of(deps, a.session_key, a.as_of_version)
    return R.GetSessionResult(success=True, session=view)


async def get_context(deps: Deps, a: A.GetContextArgs) -> R.GetContextResult:
    """A page of a session's context entries, with its summary."""
    check_page(a.limit, deps)
    view, as_of = await session_as_of(deps, a.session_key, a.as_of_version)
    entries, after = await deps.reads.context(a.session_key, a.after_sequence, a.limit, as_of)
    summary = await deps.reads.summary(a.session_key, as_of)
    if summary is None:
        raise SessionNotFound(f"session {a.session_key!r} has no summary", sessionKey=a.session_key)
    return R.GetContextResult(
        success=True,
        session_key=a.session_key,
        version=view.version,
        entries=entries,
        next_after_sequence=after,
        summary=present.summary_out(summary),
    )


async def list_sessions(deps: Deps, a: A.ListSessionsArgs) -> R.ListSessionsResult:
    """Sessions, newest first."""
    check_page(a.limit, deps)
    check_length("agent", a.agent, deps.limits.agent_max)
    page = await visible(deps).list_sessions(a.agent, a.status, a.limit, a.cursor)
    return R.ListSessionsResult(success=True, sessions=page.items, next_cursor=page.next_cursor)


async def list_handoffs(deps: Deps, a: A.ListHandoffsArgs) -> R.ListHandoffsResult:
    """Handoffs, newest first; an agent's inbox is ``targetAgent=me, status=pending``."""
    check_page(a.limit, deps)
    check_length("targetAgent", a.target_agent, deps.limits.agent_max)
    check_length("sourceAgent", a.source_agent, deps.limits.agent_max)
    page = await visible(deps).list_handoffs(a.target_agent, a.source_agent, a.status, a.limit, a.cursor)
    handoffs = [present.handoff_view(v) for v in page.items]
    return R.ListHandoffsResult(success=True, handoffs=handoffs, next_cursor=page.next_cursor)
