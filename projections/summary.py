"""The deterministic session summary: a bounded fold of the context, and its text rendering.

Rules: counts by context type; participants in order of first appearance; the first and the last
``message`` entry; the last `MAX_DECISIONS` ``decision`` entries; open tasks. A ``task`` entry opens
a task whose id is ``metadata.taskId`` (or its content); a later ``task`` entry with the same id and
``metadata.status`` in done/completed/closed/cancelled closes it. At most `MAX_TASKS` open tasks are
kept (the oldest drop out), so the summary's size never grows with the session's history.
"""

from __future__ import annotations

import msgspec

from handoff.kernel.package import PackageHead
from projections.views import SummaryView, TaskItem

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


def add_entry(
    view: SummaryView,
    *,
    seq: int,
    context_type: str,
    content: str,
    agent: str,
    metadata: dict[str, object],
    at: str,
    version: int | None = None,
) -> SummaryView:
    """The summary after one more context entry (and at `version`, if given)."""
    counts = dict(view.counts)
    counts[context_type] = counts.get(context_type, 0) + 1
    participants = view.participants if agent in view.participants else [*view.participants, agent]
    changes: dict[str, object] = {
        "total_entries": view.total_entries + 1,
        "counts": counts,
        "participants": participants,
        "last_activity": at,
    }
    if version is not None:
        changes["version"] = version
    if context_type == "message":
        changes["last_message"] = snippet(content)
        if view.first_message is None:
            changes["first_message"] = snippet(content)
    elif context_type == "decision":
        changes["decisions"] = [*view.decisions, snippet(content)][-MAX_DECISIONS:]
    elif context_type == "task":
        changes["open_tasks"] = _tasks(view.open_tasks, seq, content, metadata)
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
