"""MCP resources: the sessions list, the health report and four templates, read as JSON; legacy subscriptions."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import msgspec
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate

from handoff.mcp import analytics, present
from handoff.mcp.deps import Deps
from handoff.mcp.subscriptions import SESSIONS_URI
from handoff.mcp.visibility import visible

SESSION = UriTemplate.parse("handoff://sessions/{sessionKey}")
CONTEXT = UriTemplate.parse("handoff://context/{sessionKey}")
HANDOFF = UriTemplate.parse("handoff://handoffs/{handoffId}")
INBOX = UriTemplate.parse("handoff://agents/{agentId}/inbox")

JSON = "application/json"
HEALTH_URI = "handoff://health"
LIST_LIMIT = 100

TEMPLATES = (
    types.ResourceTemplate(
        name="session",
        uri_template=SESSION.template,
        mime_type=JSON,
        description="A session: status, version, participants, counts. Subscribe to hear when it changes.",
    ),
    types.ResourceTemplate(
        name="context",
        uri_template=CONTEXT.template,
        mime_type=JSON,
        description="A session with its context entries (first page) and summary.",
    ),
    types.ResourceTemplate(
        name="handoff", uri_template=HANDOFF.template, mime_type=JSON, description="A handoff and its recorded package."
    ),
    types.ResourceTemplate(
        name="inbox",
        uri_template=INBOX.template,
        mime_type=JSON,
        description="The pending handoffs addressed to an agent, newest first.",
    ),
)

RESOURCES = (
    types.Resource(name="sessions", uri=SESSIONS_URI, mime_type=JSON, description="Sessions, newest first."),
    types.Resource(
        name="health",
        uri=HEALTH_URI,
        mime_type=JSON,
        description="The server's health, as /healthz: healthy, degraded or unhealthy, per component.",
    ),
    types.Resource(
        name="analytics", uri=analytics.ANALYTICS_URI, mime_type=JSON, description="Analytics of the last 24 hours."
    ),
)


def _not_found(uri: str) -> MCPError:
    return MCPError(code=types.INVALID_PARAMS, message=f"Resource not found: {uri}", data={"uri": uri})


async def _sessions(deps: Deps) -> dict[str, Any]:
    page = await visible(deps).list_sessions(None, None, LIST_LIMIT, None)
    return {"sessions": page.items, "nextCursor": page.next_cursor}


async def _session(deps: Deps, uri: str, key: str) -> dict[str, Any]:
    view = await visible(deps).session(key)
    if view is None:
        raise _not_found(uri)
    return {"session": view}


async def _context(deps: Deps, uri: str, key: str) -> dict[str, Any]:
    view = await visible(deps).session(key)
    summary = None if view is None else await deps.reads.summary(key)
    if view is None or summary is None:
        raise _not_found(uri)
    entries, after = await deps.reads.context(key, 0, deps.limits.page_max)
    return {"session": view, "entries": entries, "nextAfterSequence": after, "summary": present.summary_out(summary)}


async def _handoff(deps: Deps, uri: str, hid: str) -> dict[str, Any]:
    view = await visible(deps).handoff(hid)
    if view is None:
        raise _not_found(uri)
    entries = await deps.reads.package_entries(view)
    return {"handoff": present.handoff_view(view), "package": present.package_out(view.package, entries)}


async def _inbox(deps: Deps, uri: str, agent: str) -> dict[str, Any]:
    if not visible(deps).inbox(agent):
        raise _not_found(uri)
    page = await deps.reads.list_handoffs(agent, None, "pending", deps.limits.page_max, None)
    handoffs = [present.handoff_view(v) for v in page.items]
    return {"agentId": agent, "handoffs": handoffs, "nextCursor": page.next_cursor}


async def read(deps: Deps, uri: str) -> dict[str, Any]:
    """The JSON body of a resource; a JSON-RPC INVALID_PARAMS error if there is no such resource."""
    if uri == SESSIONS_URI:
        return await _sessions(deps)
    if uri == HEALTH_URI:
        return await deps.health.report()
    if uri == analytics.ANALYTICS_URI:
        return await analytics.read(deps)
    if (m := SESSION.match(uri)) is not None:
        return await _session(deps, uri, str(m["sessionKey"]))
    if (m := CONTEXT.match(uri)) is not None:
        return await _context(deps, uri, str(m["sessionKey"]))
    if (m := HANDOFF.match(uri)) is not None:
        return await _handoff(deps, uri, str(m["handoffId"]))
    if (m := INBOX.match(uri)) is not None:
        return await _inbox(deps, uri, str(m["agentId"]))
    raise _not_found(uri)


async def on_list_resources(
    ctx: ServerRequestContext[Deps], params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    """``resources/list``."""
    return types.ListResourcesResult(resources=list(RESOURCES))


async def on_list_templates(
    ctx: ServerRequestContext[Deps], params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    """``resources/templates/list``."""
    return types.ListResourceTemplatesResult(resource_templates=list(TEMPLATES))


async def on_read(ctx: ServerRequestContext[Deps], params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    """``resources/read``."""
    body = await read(ctx.lifespan_context, params.uri)
    text = msgspec.json.encode(body).decode()
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=params.uri, mime_type=JSON, text=text)])


async def on_subscribe(ctx: ServerRequestContext[Deps], params: types.SubscribeRequestParams) -> types.EmptyResult:
    """``resources/subscribe`` (2025-11-25 era; 2026-07-28 clients use ``subscriptions/listen``)."""
    if not await visible(ctx.lifespan_context).uri(params.uri):
        raise _not_found(params.uri)
    await ctx.lifespan_context.notifier.subscribe(ctx.session, params.uri)
    return types.EmptyResult()


async def on_unsubscribe(ctx: ServerRequestContext[Deps], params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    """``resources/unsubscribe``."""
    ctx.lifespan_context.notifier.unsubscribe(ctx.session, params.uri)
    return types.EmptyResult()


async def on_listen(
    ctx: ServerRequestContext[Deps], params: types.SubscriptionsListenRequestParams
) -> types.SubscriptionsListenResult:
    """``subscriptions/listen`` (2026-07-28): the SDK's stream, for resources the caller may read."""
    deps = ctx.lifespan_context
    reads = visible(deps)
    for uri in params.notifications.resource_subscriptions or ():
        if not await reads.uri(uri):
            raise _not_found(uri)
    return await deps.notifier.listen(ctx, params)
