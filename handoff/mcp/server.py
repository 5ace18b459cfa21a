"""Builds the lowlevel MCP `Server` over the adapter's dependencies (tools, resources, prompt, subscriptions)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server

import handoff
from handoff.mcp import prompts, resources, tools
from handoff.mcp.clientlog import ClientLog
from handoff.mcp.deps import Deps

INSTRUCTIONS = (
    "handoff lets agents hand work to each other with their context intact. Register a session, append context "
    "with update_context, then request_handoff to another agent; the target reads its inbox "
    "(list_handoffs targetAgent=<me> status=pending, or the handoff://agents/{agentId}/inbox resource), calls "
    "accept_handoff and later complete_handoff. Failures return isError with a code and a sentence."
)

_DECLARED = tuple(spec.declare() for spec in tools.TOOLS.values())
_INPUT_SCHEMAS = {tool.name: tool.input_schema for tool in _DECLARED}


async def _list_tools(
    ctx: ServerRequestContext[Deps], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=list(_DECLARED))


async def _call_tool(ctx: ServerRequestContext[Deps], params: types.CallToolRequestParams) -> types.CallToolResult:
    return await tools.call_tool(ctx.lifespan_context, params.name, params.arguments)


def _input_schema(name: str) -> Mapping[str, Any] | None:
    return _INPUT_SCHEMAS.get(name)


def build_server(deps: Deps) -> Server[Deps]:
    """The MCP server; its lifespan hands `deps` to every handler as ``ctx.lifespan_context``."""

    @asynccontextmanager
    async def lifespan(_server: Server[Deps]) -> AsyncIterator[Deps]:
        yield deps

    server = Server(
        "handoff",
        version=handoff.__version__,
        title="handoff",
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        get_tool_input_schema=_input_schema,
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
        on_list_resources=resources.on_list_resources,
        on_list_resource_templates=resources.on_list_templates,
        on_read_resource=resources.on_read,
        on_subscribe_resource=resources.on_subscribe,
        on_unsubscribe_resource=resources.on_unsubscribe,
        on_subscriptions_listen=resources.on_listen,
        on_list_prompts=prompts.on_list,
        on_get_prompt=prompts.on_get,
    )
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, ClientLog().on_set_level)
    return server
