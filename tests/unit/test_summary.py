"""The deterministic summary: counts, participants, first/last message, decisions, open tasks."""

from __future__ import annotations

from projections.summary import (
    DONE,
    MAX_DECISIONS,
    MAX_TASKS,
    SNIPPET,
    add_entries,
    key_points,
    package_head,
    render,
    snippet,
)
from projections.views import ContextEntryView, SummaryView

AT = "2026-11-27T10:00:00.000Z"


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
    """The summary after one more context entry: `add_entries` of one, as the one-event fold calls it."""
    entry = ContextEntryView(
        sequence_number=seq,
        context_type=context_type,
        content=content,
        content_length=len(content),
        agent=agent,
        created_at=at,
        version=version or 0,
        event_id="",
        metadata=metadata,
    )
    return add_entries(view, (entry,), version)


def _fold(*entries: tuple[str, str] | tuple[str, str, str] | tuple[str, str, str, dict]) -> SummaryView:
    """A summary after entries given as (type, content[, agent[, metadata]])."""
    view = SummaryView(session_key="s1")
    for seq, entry in enumerate(entries, start=1):
        kind, content, agent, metadata = (*entry, "alice", {})[:4] if len(entry) == 2 else (*entry, {})[:4]
        view = add_entry(view, seq=seq, context_type=kind, content=content, agent=agent, metadata=metadata, at=AT)
    return view


def test_entries_are_counted_by_context_type():
    view = _fold(("message", "a"), ("message", "b"), ("file", "f"), ("system", "s"))
    assert view.counts == {"message": 2, "file": 1, "system": 1}
    assert view.total_entries == 4
    assert view.last_activity == AT


def test_participants_are_listed_in_order_of_first_appearance():
    view = _fold(("message", "a", "bob"), ("message", "b", "alice"), ("message", "c", "bob"), ("file", "d", "carol"))
    assert view.participants == ["bob", "alice", "carol"]


def test_the_first_and_the_last_message_are_kept():
    view = _fold(("message", "first"), ("file", "not a message"), ("message", "middle"), ("message", "last"))
    assert (view.first_message, view.last_message) == ("first", "last")


def test_a_session_without_messages_has_no_first_or_last_message():
    view = _fold(("system", "registered"))
    assert view.first_message is None and view.last_message is None


def test_only_the_last_decisions_are_kept():
    view = _fold(*[("decision", f"d{i}") for i in range(MAX_DECISIONS + 3)])
    assert view.decisions == [f"d{i}" for i in range(3, MAX_DECISIONS + 3)]


def test_a_task_entry_opens_a_task_named_by_its_task_id():
    view = _fold(("task", "write the tests", "alice", {"taskId": "T1"}))
    assert [(t.task_id, t.text, t.sequence_number) for t in view.open_tasks] == [("T1", "write the tests", 1)]


def test_a_task_without_task_id_is_named_by_its_content():
    assert _fold(("task", "fix  the\nbug")).open_tasks[0].task_id == "fix the bug"


def test_a_later_task_entry_with_a_done_status_closes_the_task():
    for status in sorted(DONE):
        view = _fold(
            ("task", "write the tests", "alice", {"taskId": "T1"}),
            ("task", "other", "alice", {"taskId": "T2"}),
            ("task", "tests written", "bob", {"taskId": "T1", "status": status.upper()}),
        )
        assert [t.task_id for t in view.open_tasks] == ["T2"], status


def test_a_later_task_entry_with_an_open_status_updates_and_moves_the_task():
    view = _fold(
        ("task", "a", "alice", {"taskId": "T1"}),
        ("task", "b", "alice", {"taskId": "T2"}),
        ("task", "a, half done", "alice", {"taskId": "T1", "status": "in_progress"}),
    )
    assert [(t.task_id, t.text, t.sequence_number) for t in view.open_tasks] == [
        ("T2", "b", 2),
        ("T1", "a, half done", 3),
    ]


def test_closing_an_unknown_task_changes_no_open_task():
    view = _fold(("task", "a", "alice", {"taskId": "T1"}), ("task", "x", "alice", {"taskId": "T9", "status": "done"}))
    assert [t.task_id for t in view.open_tasks] == ["T1"]


def test_only_the_newest_open_tasks_are_kept():
    view = _fold(*[("task", f"t{i}", "alice", {"taskId": f"T{i}"}) for i in range(MAX_TASKS + 2)])
    assert [t.task_id for t in view.open_tasks] == [f"T{i}" for i in range(2, MAX_TASKS + 2)]


def test_a_snippet_is_one_line_cut_with_an_ellipsis():
    assert snippet("  a\n\tb   c ") == "a b c"
    long = snippet("x" * 500)
    assert len(long) == SNIPPET and long.endswith("…")
    assert snippet("y" * SNIPPET) == "y" * SNIPPET


def test_a_snippet_of_text_led_by_much_whitespace_still_shows_the_text():
    assert snippet("\n" * 1000 + "hello") == "hello"
    cut = snippet(" " * 1000 + "z" * 300)
    assert cut == "z" * (SNIPPET - 1) + "…"


def test_a_snippet_whose_head_collapses_to_the_limit_still_shows_it_was_cut():
    text = "a " * 100 + " " * 600 + "tail"  # the first 800 characters flatten to 199 characters
    assert snippet(text) == " ".join(text.split())[: SNIPPET - 1] + "…"


def test_long_contents_are_kept_as_snippets():
    view = _fold(("message", "m" * 1000), ("decision", "d" * 1000))
    assert len(view.first_message) == SNIPPET and len(view.decisions[0]) == SNIPPET


def test_key_points_list_recent_decisions_then_open_tasks_then_the_last_message():
    view = _fold(("decision", "use msgspec"), ("task", "bench it", "alice", {"taskId": "B"}), ("message", "hi"))
    assert key_points(view) == ["Decision: use msgspec", "Open task: bench it", "Last message: hi"]


def test_the_rendered_summary_states_counts_participants_and_messages():
    view = _fold(("system", "registered"), ("message", "first", "bob"), ("message", "last"))
    text = render(view)
    assert text == (
        "Session s1: 3 context entries (message: 2, system: 1); participants: alice, bob; "
        "first message: first; last message: last."
    )


def test_the_rendered_summary_mentions_decisions_tasks_and_handoffs():
    view = _fold(("decision", "d1"), ("task", "t1"))
    view = view.__class__(**{**{f: getattr(view, f) for f in view.__struct_fields__}, "handoffs": 2})
    text = render(view)
    assert "1 recent decisions, latest: d1" in text and "1 open tasks" in text and "2 handoffs" in text


def test_the_package_head_is_the_rendered_summary_with_its_key_points_and_participants():
    view = _fold(("message", "hi", "bob"))
    head = package_head(view)
    assert (head.summary, head.key_points, head.participants) == (render(view), key_points(view), ["bob"])


def test_adding_an_entry_leaves_the_previous_summary_untouched():
    before = _fold(("message", "a"))
    add_entry(before, seq=2, context_type="message", content="b", agent="bob", metadata={}, at=AT)
    assert before.participants == ["alice"] and before.last_message == "a"


def test_adding_a_run_of_entries_at_once_equals_adding_them_one_by_one():
    kinds = ["message", "decision", "task", "file", "decision", "message"] * 5
    run = [
        ContextEntryView(
            sequence_number=seq,
            context_type=kind,
            content=f"{kind} {seq} " + "word " * seq,
            content_length=0,
            agent=f"agent-{seq % 3}",
            created_at=f"2026-11-27T10:00:{seq:02d}.000Z",
            version=seq,
            event_id=f"e{seq}",
            metadata={"taskId": f"T{seq % 4}", "status": "done" if seq % 5 == 0 else "open"},
        )
        for seq, kind in enumerate(kinds, start=2)
    ]
    start = _fold(("message", "first"))
    one_by_one = start
    for e in run:
        one_by_one = add_entry(
            one_by_one, seq=e.sequence_number, context_type=e.context_type, content=e.content, agent=e.agent,
            metadata=e.metadata, at=e.created_at, version=e.version,
        )
    at_once = add_entries(start, run, run[-1].version)
    assert at_once == one_by_one
    assert len(at_once.decisions) == MAX_DECISIONS and at_once.first_message == "first"
