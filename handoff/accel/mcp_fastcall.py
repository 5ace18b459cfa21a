"""``tools/call`` answered without the SDK's request kernel, in exactly the wire shape the kernel gives it.

The kernel (`ServerRunner`) costs ~120 µs per call: it builds a request context and a session, opens
a tracing span, validates the request twice with pydantic, builds a `CallToolResult`, then dumps,
re-validates and sieves it for the protocol version. handoff's tool handler uses none of the
context, so for the common case this module calls the tool runner it is given (handoff's
``tools.run_tool``) directly and lays out the result as the kernel would, with the key order learnt
from the kernel itself at start-up (through the kernel's private ``_serialize``).

It applies only when that is provably the same: a protocol version whose layout it learnt, a
server whose ``tools/call`` handler is handoff's, whose middleware is the SDK's tracing plus the
fast path's session recorder, with tracing off (no tracer provider installed), no cache hint for
``tools/call``, and parameters the kernel's validation cannot refuse (2026-07-28 envelopes are
checked with the SDK's own validator). Otherwise `Direct.applies` says no and the kernel runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import mcp_types as types
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.runner import ServerRunner
from mcp_types import SERVER_INFO_META_KEY
from mcp_types import methods as _methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from opentelemetry import trace
from pydantic import ValidationError

VERSIONS: Final = ("2025-11-25", "2026-07-28")
"""The versions whose layout is learnt (and tested byte for byte against the kernel)."""

_PLAIN_PARAMS: Final = frozenset({"name", "arguments"})
_KNOWN: Final = frozenset({"content", "structuredContent", "isError", "resultType", "_meta"})
_ITEM: Final = ("text", "type")
_NO_TRACING: Final = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)

RunTool = Callable[[str, dict[str, Any] | None], Awaitable[tuple[dict[str, Any], bool]]]
"""A tool call by name and arguments: its structured content, and whether it is an error result."""


class Direct:
    """Runs ``tools/call`` without the kernel when it may."""

    def __init__(
        self,
        server: Server[Any],
        lifespan_state: Any,
        tool: tuple[str, RunTool, Callable[[dict[str, Any]], str]],
        allowed_middleware: tuple[object, ...],
    ) -> None:
        """`tool`: the module of the server's ``tools/call`` handler, the call it makes, and its text content."""
        self.server = server
        handler_module, self.run_tool, self.text_of = tool
        self.allowed_middleware = allowed_middleware
        entry = server.get_request_handler("tools/call")
        handler = getattr(entry, "handler", None)
        self.ours = getattr(handler, "__module__", None) == handler_module
        learnt = {version: _learn(server, lifespan_state, version) for version in VERSIONS}
        self.layouts = {v: layout for v, layout in learnt.items() if set(layout[0]) <= _KNOWN and layout[1] == _ITEM}
        self.stamp = server.server_info_stamp

    def applies(self, version: str, params: Mapping[str, Any] | None) -> bool:
        """Whether the kernel would run handoff's tool with these params and add nothing else to the reply."""
        if not self.ours or version not in self.layouts or not isinstance(params, dict):
            return False
        if "tools/call" in self.server.cache_hints or not isinstance(trace.get_tracer_provider(), _NO_TRACING):
            return False
        if any(not _allowed(m, self.allowed_middleware) for m in self.server.middleware):
            return False
        if not isinstance(params.get("name"), str) or not isinstance(params.get("arguments", {}), dict | None):
            return False
        if version not in MODERN_PROTOCOL_VERSIONS:
            return params.keys() <= _PLAIN_PARAMS
        try:
            _methods.validate_client_request("tools/call", version, params)
        except ValidationError:
            return False
        return True

    async def call(self, version: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The result dict the kernel would return (raises what the kernel's handler would raise)."""
        body, is_error = await self.run_tool(params["name"], params.get("arguments"))
        values = {
            "content": [{"text": self.text_of(body), "type": "text"}],  # the order of _ITEM
            "structuredContent": body,
            "isError": is_error,
            "resultType": "complete",
            "_meta": {SERVER_INFO_META_KEY: self.stamp},
        }
        return {key: values[key] for key in self.layouts[version][0]}


def _allowed(middleware: object, allowed: tuple[object, ...]) -> bool:
    return isinstance(middleware, OpenTelemetryMiddleware) or middleware in allowed


def _learn(server: Server[Any], lifespan_state: Any, version: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The key order of a ``tools/call`` result and of its text item, as the kernel shapes them for `version`."""
    sample = types.CallToolResult(
        content=[types.TextContent(type="text", text="t")], structured_content={"s": 1}, is_error=False
    )
    runner = ServerRunner(server, Connection.from_envelope(version, None, None), lifespan_state)
    shaped = runner._serialize("tools/call", version, sample)  # the kernel's own shaping, run once
    return tuple(shaped), tuple(shaped["content"][0])
