"""The tool table (name, description, argument and result types) and the one place tool calls are run.

A call decodes its arguments with msgspec (INVALID_ARGUMENT naming the field), runs the handler,
and returns ``structuredContent`` plus the same JSON as text for clients that predate structured
results. A `HandoffError` becomes ``isError: true`` with its code; anything else is a protocol error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import mcp_types as types
import msgspec
from mcp.shared.exceptions import MCPError

from handoff.kernel import commands as C
from handoff.kernel.errors import ERROR_CODES, HandoffError
from handoff.mcp import analytics, codebase_tool
from handoff.mcp import args as A
from handoff.mcp import handlers as H
from handoff.mcp import operations as ops
from handoff.mcp import results as R
from handoff.mcp.auth import current_principal
from handoff.mcp.deps import Deps

Handler = Callable[[Deps, Any], Awaitable[msgspec.Struct]]

_WRITE_NOTE = (
    " Optional expectedVersion (the session version you last saw; VERSION_CONFLICT if it moved) and"
    " idempotencyKey (a retry with the same key and arguments returns the first result)."
)


@dataclass(frozen=True)
class ToolSpec:
    """One MCP tool."""

    name: str
    description: str
    args: type[Any]
    result: type[Any]
    handler: Handler
    writes: bool
    session_write: bool = True  # a write of a session's log: takes expectedVersion and idempotencyKey

    def declare(self) -> types.Tool:
        """The tool as ``tools/list`` shows it."""
        return types.Tool(
            name=self.name,
            description=self.description + (_WRITE_NOTE if self.writes and self.session_write else ""),
            input_schema=A.json_schema(self.args),
            output_schema=R.output_schema(self.result),
            annotations=types.ToolAnnotations(
                read_only_hint=not self.writes, destructive_hint=False, idempotent_hint=not self.writes
            ),
        )


def _spec(name: str, description: str, a: type[Any], r: type[Any], h: Handler, writes: bool = True) -> ToolSpec:
    return ToolSpec(name, description, a, r, h, writes)


_OPERATIONS = (  # CONTRACT §9, for operators (any caller with --auth none)
    ToolSpec("get_job_status", "Each job's config, whether it runs now, and its run stats (or one job's).",
             ops.GetJobStatusArgs, ops.GetJobStatusResult, ops.get_job_status, False),
    ToolSpec("run_job_now", "Run a job now (session-expiry, handoff-expiry, dormancy, retention, anchor) and "
             "report its counts.", ops.RunJobNowArgs, ops.RunJobNowResult, ops.run_job_now, True, False),
    ToolSpec("update_job_config", "Change a job's intervalSeconds (1 s to 7 d) or enabled; in force at once, "
             "recorded in the operations log.", ops.UpdateJobConfigArgs, ops.UpdateJobConfigResult,
             ops.update_job_config, True, False),
    ToolSpec("get_configuration", "The configuration (retention, limits, monitoring, or all) and its version.",
             ops.GetConfigurationArgs, ops.ConfigurationResult, ops.get_configuration, False),
    ToolSpec("update_configuration", "Change settings of one configuration section; pass expectedVersion to refuse "
             "a change made since you read it (VERSION_CONFLICT). Recorded in the operations log.",
             ops.UpdateConfigurationArgs, ops.ConfigurationResult, ops.update_configuration, True, False),
)  # fmt: skip

TOOLS: Mapping[str, ToolSpec] = MappingProxyType({
    t.name: t
    for t in (
        _spec("register_session", "Start a new session owned by agentFrom.", C.RegisterSessionArgs,
              R.RegisterSessionResult, H.register_session),
        _spec("update_context", "Append one context entry (message, file, tool_call, system, decision, task) to an "
              "active session.", C.UpdateContextArgs, R.UpdateContextResult, H.update_context),
        _spec("request_handoff", "Ask targetAgent to take over (full_handoff), receive context (context_transfer) or "
              "help (collaboration); records a context package within tokenBudget.", C.RequestHandoffArgs,
              R.HandoffResult, H.request_handoff),
        _spec("accept_handoff", "Accept a pending handoff addressed to you; only one agent can accept it.",
              C.AcceptHandoffArgs, R.HandoffResult, H.accept_handoff),
        _spec("complete_handoff", "Complete a handoff you accepted, optionally with a result object.",
              C.CompleteHandoffArgs, R.HandoffResult, H.complete_handoff),
        _spec("reject_handoff", "Decline a pending handoff addressed to you, with a reason.", C.RejectHandoffArgs,
              R.HandoffResult, H.reject_handoff),
        _spec("cancel_handoff", "Withdraw a handoff you requested, before it completes.", C.CancelHandoffArgs,
              R.HandoffResult, H.cancel_handoff),
        _spec("close_session", "Close a session you take part in; its open handoffs are cancelled.",
              C.CloseSessionArgs, R.CloseSessionResult, H.close_session),
        _spec("get_handoff", "A handoff and the context package recorded when it was requested.", A.GetHandoffArgs,
              R.GetHandoffResult, H.get_handoff, writes=False),
        _spec("get_session", "A session (status, version, participants, counts), now or asOfVersion.",
              A.GetSessionArgs, R.GetSessionResult, H.get_session, writes=False),
        _spec("get_context", "A page of a session's context entries after afterSequence, with its summary.",
              A.GetContextArgs, R.GetContextResult, H.get_context, writes=False),
        _spec("list_sessions", "Sessions newest first, filtered by participant agent and status.",
              A.ListSessionsArgs, R.ListSessionsResult, H.list_sessions, writes=False),
        _spec("list_handoffs", "Handoffs newest first; your inbox is targetAgent=<you>, status=pending.",
              A.ListHandoffsArgs, R.ListHandoffsResult, H.list_handoffs, writes=False),
        _spec("get_analytics", "Sessions by status, handoffs by type and outcome, acceptance rate and time to accept "
              "per target agent, context entries per hour and the busiest agents, over window 1h, 24h (default) or "
              "7d, for everyone or one agent.", analytics.GetAnalyticsArgs, analytics.GetAnalyticsResult,
              analytics.get_analytics, writes=False),
        _spec("analyze_codebase", "Summarise source files under the server's codebase roots (imports and top-level "
              "definitions of Python, JavaScript and TypeScript; analysisType syntax, dependencies, structure or full) "
              "and append one `file` context entry per analysed file, all in one write; each refused file (outside "
              "the roots, over 1 MiB, binary) is a per-file error.", codebase_tool.AnalyzeCodebaseArgs,
              codebase_tool.AnalyzeCodebaseResult, codebase_tool.analyze_codebase),
        *_OPERATIONS,
    )
})  # fmt: skip

_FIELD = re.compile(r"at `\$\.([^`\[]+)|field `([^`]+)`")


def _result(body: dict[str, Any], *, is_error: bool) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text_of(body))],
        structured_content=body,
        is_error=is_error,
    )


def invalid_argument(exc: msgspec.ValidationError) -> dict[str, Any]:
    """The INVALID_ARGUMENT body for a decoding failure, naming the offending field when known."""
    body: dict[str, Any] = {"success": False, "code": "INVALID_ARGUMENT", "error": f"Invalid arguments: {exc}"}
    match = _FIELD.search(str(exc))
    if match:
        body["field"] = match.group(1) or match.group(2)
    return body


async def call_tool(deps: Deps, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
    """Run one tool call, counting it in the metrics by outcome code."""
    body, is_error = await run_tool(deps, name, arguments)
    return _result(body, is_error=is_error)


async def run_tool(deps: Deps, name: str, arguments: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """Run one tool call, counting it in the metrics by outcome code: its structured content and whether it failed.

    Raises:
        MCPError: the tool does not exist (a protocol error, INVALID_PARAMS).
    """
    spec = TOOLS.get(name)
    if spec is None:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")
    started = time.perf_counter()
    code = "INTERNAL"
    principal = current_principal()
    if principal is not None:
        deps = deps.acting_as(principal)
    try:
        parsed = msgspec.convert(arguments or {}, spec.args)
        result = await spec.handler(deps, parsed)
    except msgspec.ValidationError as exc:
        code = "INVALID_ARGUMENT"
        return invalid_argument(exc), True
    except HandoffError as exc:
        if exc.code not in ERROR_CODES:
            raise  # a codec error is a bug or tampering, not something the caller can correct
        code = exc.code
        return exc.to_dict(), True
    else:
        code = "OK"
        return msgspec.to_builtins(result), False
    finally:
        deps.metrics.observe(name, code, time.perf_counter() - started)


def text_of(body: dict[str, Any]) -> str:
    """The text content of a result: its structured content as JSON, for clients that predate structured results."""
    return msgspec.json.encode(body).decode()
