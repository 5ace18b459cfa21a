"""The deterministic session summary: a bounded fold of the context, and its text rendering.

Rules: counts by context type; participants in order of first appearance; the first and the last
``message`` entry; the last `MAX_DECISIONS` ``decision`` entries; open tasks. A ``task`` entry opens
a task whose id is ``metadata.taskId`` (or its content); a later ``task`` entry with the same id and
``metadata.status`` in done/completed/closed/cancelled closes it. At most `MAX_TASKS` open tasks are
kept (the oldest drop out), so the summary's size never grows with the session's history.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from handoff.kernel.package import PackageHead
from handoff.kernel.types import AgentId
from projections.views import ContextEntryView, SummaryView, TaskItem

SNIPPET = 200
MAX_DECISIONS = 10
MAX_TASKS = 20
KEY_DECISIONS = 5
KEY_TASKS = 5
DONE = frozenset({"done", "completed", "closed", "cancelled"})


def snippet(text: str, limit: int = SNIPPET) -> str:
    """The text on one line, cut to `limit` characters with an ellipsis."""
    head = text[: limit * 4]  # usually only the head can reach the snippet ...
    flat = " ".join(head.split())
    if len(flat) <= limit and len(head) < len(text):  # ... unless whitespace collapsed it
        flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def tally(
    counts: dict[str, int], participants: list[AgentId], entries: Sequence[ContextEntryView]
) -> tuple[dict[str, int], list[AgentId]]:
    """Counts by context type and participants in order of first appearance, after more entries (copies)."""
    counts = dict(counts)
    for entry in entries:
        counts[entry.context_type] = counts.get(entry.context_type, 0) + 1
        if entry.agent not in participants:
            participants = [*participants, entry.agent]
    return counts, participants


def add_entries(view: SummaryView, entries: Sequence[ContextEntryView], version: int | None = None) -> SummaryView:
    """The summary after more context entries, in order (and at `version`, if given).

    Adding a run at once equals adding its entries one by one; only the texts that survive into the
    summary (the first and last message, the last decisions) are cut into snippets.
    """
    counts, participants = tally(view.counts, view.participants, entries)
    changes: dict[str, object] = {
        "total_entries": view.total_entries + len(entries),
        "counts": counts,
        "participants": participants,
        "last_activity": entries[-1].created_at,
    }
    if version is not None:
        changes["version"] = version
    messages = [entry.content for entry in entries if entry.context_type == "message"]
    if messages:
        changes["last_message"] = snippet(messages[-1])
        if view.first_message is None:
            changes["first_message"] = changes["last_message"] if len(messages) == 1 else snippet(messages[0])
    decisions = [entry.content for entry in entries if entry.context_type == "decision"][-MAX_DECISIONS:]
    if decisions:
        changes["decisions"] = [*view.decisions, *map(snippet, decisions)][-MAX_DECISIONS:]
    tasks = view.open_tasks
    for entry in entries:
        if entry.context_type == "task":
            tasks = changes["open_tasks"] = _tasks(tasks, entry.sequence_number, entry.content, entry.metadata)
    return msgspec.structs.replace(view, **changes)


def _tasks(tasks: list[TaskItem], seq: int, content: str, metadata: dict[str, object]) -> list[TaskItem]:
    task_id = str(metadata.get("taskId") or snippet(content))
    rest = [t for t in tasks if t.task_id != task_id]
    if str(metadata.get("status", "")).lower() in DONE:
        return rest
    return [*rest, TaskItem(task_id=task_id, text=snippet(content), sequence_number=seq)][-MAX_TASKS:]


def key_points(view: SummaryView) -> list[str]:
    """The few lines a receiving agent should read first."""
    points = [f"Decision: {d}" for d in view.decisions[-KEY_DECISIONS:]]
    points += [f"Open task: {t.text}" for t in view.open_tasks[-KEY_TASKS:]]
    if view.last_message is not None:
        points.append(f"Last message: {view.last_message}")
    return points


def render(view: SummaryView) -> str:
    """The summary as one paragraph of text."""
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(view.counts.items()))
    parts = [
        f"Session {view.session_key}: {view.total_entries} context entries ({counts})",
        f"participants: {', '.join(view.participants)}",
    ]
    if view.first_message is not None:
        parts.append(f"first message: {view.first_message}")
    if view.last_message is not None and view.last_message != view.first_message:
        parts.append(f"last message: {view.last_message}")
    if view.decisions:
        parts.append(f"{len(view.decisions)} recent decisions, latest: {view.decisions[-1]}")
    if view.open_tasks:
        parts.append(f"{len(view.open_tasks)} open tasks")
    if view.handoffs:
        parts.append(f"{view.handoffs} handoffs")
    return "; ".join(parts) + "."


def package_head(view: SummaryView) -> PackageHead:
    """The summary part of a handoff package."""
    return PackageHead(summary=render(view), key_points=key_points(view), participants=list(view.participants))
