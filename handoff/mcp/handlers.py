"""The thirteen MCP tools: typed arguments → command or query → result struct.

Each handler raises a `HandoffError` to refuse; `handoff.mcp.tools` turns that into a tool error.

``asOfVersion`` (get_session, get_context): an unknown session is SESSION_NOT_FOUND; for a
session that exists, a version below 1 or above its current version is INVALID_ARGUMENT.
"""

from __future__ import annotations

from typing import Any

from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    CancelHandoff,
    CloseSession,
    CompleteHandoff,
    RegisterSession,
    RejectHandoff,
    RequestHandoff,
)
from handoff.kernel.errors import HandoffNotFound, InvalidArgument, LimitExceeded, SessionNotFound
from handoff.mcp import args as A
from handoff.mcp import present
from handoff.mcp import results as R
from handoff.mcp.deps import Deps
from projections.views import SessionView

_RESOLVED_LATER = "-"  # a handoff command's session key, filled in from the read model by `Deps.submit`


def _write(a: Any) -> dict[str, Any]:
    return {"expected_version": a.expected_version, "idempotency_key": a.idempotency_key}


def check_length(field: str, value: str | None, limit: int) -> None:
    """LIMIT_EXCEEDED if a read argument is longer than its limit."""
    if value is not None and len(value) > limit:
        raise LimitExceeded(f"{field} is {len(value)} characters; the limit is {limit}", field=field, limit=limit)


def check_page(limit: int, deps: Deps) -> None:
    """LIMIT_EXCEEDED if a page size is over the configured maximum."""
    if limit > deps.limits.page_max:
        raise LimitExceeded(f"limit {limit} is over the maximum of {deps.limits.page_max}", field="limit")


async def register_session(deps: Deps, a: A.RegisterSessionArgs) -> R.RegisterSessionResult:
    """Start a session."""
    cmd = RegisterSession(session_key=a.session_key, agent_from=a.agent_from, metadata=a.metadata, **_write(a))
    return present.registered(await deps.submit(cmd))


async def update_context(deps: Deps, a: A.UpdateContextArgs) -> R.UpdateContextResult:
    """Append one context entry; without `agent` the kernel attributes it to the session's holder."""
    cmd = AppendContext(
        session_key=a.session_key,
        context_type=a.context_type,
        content=a.content,
        metadata=a.metadata,
        agent=a.agent,
        **_write(a),
    )
    return present.appended(await deps.submit(cmd))


async def request_handoff(deps: Deps, a: A.RequestHandoffArgs) -> R.HandoffResult:
    """Ask another agent to take over or help; the package is built and recorded now."""
    cmd = RequestHandoff(
        session_key=a.session_key,
        target_agent=a.target_agent,
        request_type=a.request_type,
        request_data=a.request_data,
        token_budget=a.token_budget,
        **_write(a),
    )
    return present.handoff_changed(await deps.submit(cmd))


async def accept_handoff(deps: Deps, a: A.AcceptHandoffArgs) -> R.HandoffResult:
    """The target takes the handoff."""
    cmd = AcceptHandoff(session_key=_RESOLVED_LATER, handoff_id=a.handoff_id, agent=a.agent, **_write(a))
    return present.handoff_changed(await deps.submit(cmd))


async def complete_handoff(deps: Deps, a: A.CompleteHandoffArgs) -> R.HandoffResult:
    """The accepting agent finishes the handoff."""
    cmd = CompleteHandoff(
        session_key=_RESOLVED_LATER, handoff_id=a.handoff_id, agent=a.agent, result=a.result, **_write(a)
    )
    return present.handoff_changed(await deps.submit(cmd))


async def reject_handoff(deps: Deps, a: A.RejectHandoffArgs) -> R.HandoffResult:
    """The target declines the handoff."""
    cmd = RejectHandoff(
        session_key=_RESOLVED_LATER, handoff_id=a.handoff_id, agent=a.agent, reason=a.reason, **_write(a)
    )
    return present.handoff_changed(await deps.submit(cmd))


async def cancel_handoff(deps: Deps, a: A.CancelHandoffArgs) -> R.HandoffResult:
    """The requester withdraws the handoff."""
    cmd = CancelHandoff(
        session_key=_RESOLVED_LATER, handoff_id=a.handoff_id, agent=a.agent, reason=a.reason, **_write(a)
    )
    return present.handoff_changed(await deps.submit(cmd))


async def close_session(deps: Deps, a: A.CloseSessionArgs) -> R.CloseSessionResult:
    """Close a session; its open handoffs are cancelled."""
    cmd = CloseSession(session_key=a.session_key, agent=a.agent, reason=a.reason, **_write(a))
    return present.closed(await deps.submit(cmd))


async def get_handoff(deps: Deps, a: A.GetHandoffArgs) -> R.GetHandoffResult:
    """A handoff and the package recorded when it was requested."""
    check_length("handoffId", a.handoff_id, deps.limits.key_max)
    view = await deps.reads.handoff(a.handoff_id)
    if view is None:
        raise HandoffNotFound(f"handoff {a.handoff_id!r} does not exist", handoffId=a.handoff_id)
    entries = await deps.reads.package_entries(view)
    return R.GetHandoffResult(
        success=True, handoff=present.handoff_view(view), package=present.package_out(view.package, entries)
    )


async def session_as_of(deps: Deps, key: str, as_of: int | None) -> tuple[SessionView, int | None]:
    """The session now or as of a version, and the version to read other views at (None: live).

    See the module docstring for the errors.
    """
    check_length("sessionKey", key, deps.limits.key_max)
    live = await deps.reads.session(key)
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
    return past, as_of


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
    page = await deps.reads.list_sessions(a.agent, a.status, a.limit, a.cursor)
    return R.ListSessionsResult(success=True, sessions=page.items, next_cursor=page.next_cursor)


async def list_handoffs(deps: Deps, a: A.ListHandoffsArgs) -> R.ListHandoffsResult:
    """Handoffs, newest first; an agent's inbox is ``targetAgent=me, status=pending``."""
    check_page(a.limit, deps)
    check_length("targetAgent", a.target_agent, deps.limits.agent_max)
    check_length("sourceAgent", a.source_agent, deps.limits.agent_max)
    page = await deps.reads.list_handoffs(a.target_agent, a.source_agent, a.status, a.limit, a.cursor)
    handoffs = [present.handoff_view(v) for v in page.items]
    return R.ListHandoffsResult(success=True, handoffs=handoffs, next_cursor=page.next_cursor)
