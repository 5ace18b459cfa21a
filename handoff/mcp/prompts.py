"""The ``continue_from_handoff`` prompt: what a receiving agent needs to pick the work up."""

from __future__ import annotations

import json

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from handoff.kernel.package import PackageEntry
from handoff.mcp.deps import Deps
from handoff.mcp.visibility import visible
from projections.views import HandoffView

NAME = "continue_from_handoff"

PROMPT = types.Prompt(
    name=NAME,
    title="Continue from a handoff",
    description="The handoff's package (summary, key points, entries), its request and what to call next.",
    arguments=[types.PromptArgument(name="handoffId", description="the handoff to pick up", required=True)],
)


def _next_steps(view: HandoffView) -> str:
    hid, target = view.handoff_id, view.target_agent
    if view.status == "pending":
        return (
            f"Next: call accept_handoff with handoffId={hid!r} and agent={target!r} (or reject_handoff with a reason "
            f"if you cannot take it). Record your progress with update_context on session {view.session_key!r}; "
            f"when the work is done, call complete_handoff with handoffId={hid!r}, agent={target!r} and a result."
        )
    if view.status == "accepted":
        return (
            f"This handoff was accepted by {view.accepted_by!r}. Record progress with update_context on session "
            f"{view.session_key!r}; when done, call complete_handoff with handoffId={hid!r} and agent="
            f"{view.accepted_by!r}."
        )
    return f"This handoff is {view.status}; there is nothing left to accept or complete."


def _briefing(view: HandoffView) -> str:
    rec = view.package
    lines = [
        f"You are {view.target_agent!r}, receiving handoff {view.handoff_id!r} ({view.request_type}) from "
        f"{view.source_agent!r} in session {view.session_key!r}. Status: {view.status}.",
        "",
        f"Summary: {rec.summary}",
    ]
    if rec.key_points:
        lines += ["", "Key points:", *(f"- {p}" for p in rec.key_points)]
    if rec.participants:
        lines += ["", f"Participants: {', '.join(rec.participants)}"]
    if view.request_data:
        lines += ["", f"Request data: {json.dumps(view.request_data, ensure_ascii=False, sort_keys=True)}"]
    return "\n".join(lines)


def _entries(view: HandoffView, entries: list[PackageEntry]) -> str:
    rec = view.package
    if not entries:
        return "The package holds no context entries."
    head = (
        f"Context entries {rec.from_sequence}..{rec.to_sequence} (newest that fit {rec.token_budget} tokens; "
        f"sha256 {rec.sha256}):"
    )
    body = [f"#{e.sequence_number} [{e.context_type}] {e.agent} at {e.created_at}:\n{e.content}" for e in entries]
    return "\n\n".join([head, *body])


def messages(view: HandoffView, entries: list[PackageEntry]) -> list[types.PromptMessage]:
    """The prompt's messages: briefing, recorded entries, next steps."""
    texts = [_briefing(view), _entries(view, entries), _next_steps(view)]
    return [types.PromptMessage(role="user", content=types.TextContent(type="text", text=t)) for t in texts]


async def on_list(
    ctx: ServerRequestContext[Deps], params: types.PaginatedRequestParams | None
) -> types.ListPromptsResult:
    """``prompts/list``."""
    return types.ListPromptsResult(prompts=[PROMPT])


async def on_get(ctx: ServerRequestContext[Deps], params: types.GetPromptRequestParams) -> types.GetPromptResult:
    """``prompts/get``: a JSON-RPC INVALID_PARAMS error for an unknown prompt or handoff."""
    if params.name != NAME:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
    hid = (params.arguments or {}).get("handoffId")
    if not hid:
        raise MCPError(code=types.INVALID_PARAMS, message="handoffId is required")
    deps = ctx.lifespan_context
    view = await visible(deps).handoff(hid)
    if view is None:
        raise MCPError(
            code=types.INVALID_PARAMS, message=f"handoff {hid!r} does not exist", data={"code": "HANDOFF_NOT_FOUND"}
        )
    entries = await deps.reads.package_entries(view)
    return types.GetPromptResult(
        description=f"Continue from handoff {hid} ({view.request_type}, {view.status})",
        messages=messages(view, entries),
    )
