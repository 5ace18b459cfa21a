"""Keys, indexes and queries: context pages, listings newest first, and cursors."""

from __future__ import annotations

import pytest

from handoff.kernel.errors import InvalidArgument
from handoff.storage import keys
from handoff.storage.kv import InMemoryKeyValue
from projections.queries import Queries, decode_cursor, encode_cursor
from projections.replay import fold_events

from .support import H1, accept, append, close, given, handoff_ids, register, request


def _at(minute: int) -> str:
    return f"2026-11-27T10:{minute:02d}:00.000Z"


def _queries(*histories) -> Queries:
    kv = InMemoryKeyValue()
    fold_events(kv, [env for history in histories for env in history])
    return Queries(kv)


def _sessions(n: int, agent: str = "alice") -> list:
    """n sessions s0..s(n-1) of `agent`, each registered a minute after the one before."""
    return [given(register(agent, key=f"s{i}"), now=_at(i), prefix=f"s{i}") for i in range(n)]


# -- keys --------------------------------------------------------------------------------------------


def test_context_keys_sort_by_sequence_number_within_their_session():
    assert keys.context_key("s", 2) < keys.context_key("s", 10) < keys.context_key("s", 100)
    assert keys.context_key("s", 1).startswith(keys.context_prefix("s"))


def test_one_session_prefix_never_covers_another_whose_key_extends_it():
    assert not keys.context_key("s.1", 1).startswith(keys.context_prefix("s"))
    assert not keys.index_prefix("Sa", "al", "active").startswith(keys.index_prefix("Sa", "al"))


def test_view_keys_are_distinct_per_kind():
    assert len({keys.session_key("x"), keys.summary_key("x"), keys.handoff_key("x"), keys.context_prefix("x")}) == 4


def test_index_entries_of_newer_views_sort_first():
    old, new = (_queries(h).session(f"s{i}") for i, h in enumerate(_sessions(2)))
    (old_entry,) = [k for k in keys.session_index(old) if k.startswith(keys.index_prefix("S*"))]
    (new_entry,) = [k for k in keys.session_index(new) if k.startswith(keys.index_prefix("S*"))]
    assert new_entry < old_entry
    assert keys.index_id(new_entry) == "s1"


def test_a_session_is_indexed_overall_by_status_by_participant_and_by_both():
    view = _queries(given(register("alice"), append(agent="bob"))).session("s1")
    prefixes = {entry.rsplit(keys.SEP, 2)[0] + keys.SEP for entry in keys.session_index(view)}
    assert prefixes == {
        keys.index_prefix("S*"),
        keys.index_prefix("Ss", "active"),
        keys.index_prefix("Sa", "alice"),
        keys.index_prefix("Sa", "bob"),
        keys.index_prefix("Sas", "alice", "active"),
        keys.index_prefix("Sas", "bob", "active"),
    }


def test_a_handoff_is_indexed_overall_by_status_by_target_and_by_source():
    history = given(register(), request("bob"))
    view = _queries(history).handoff(handoff_ids(history)[0])
    assert {keys.index_id(e) for e in keys.handoff_index(view)} == {view.handoff_id}
    assert len(keys.handoff_index(view)) == 6


def test_the_store_holds_exactly_the_index_entries_of_the_current_views():
    history = given(register(), request("bob"), accept(H1), append(agent="carol"), close())
    q = _queries(history)
    stored = {k for k, _ in q.kv.scan(b"I:")}
    expected = keys.session_index(q.session("s1")) | keys.handoff_index(q.handoff(handoff_ids(history)[0]))
    assert stored == expected


# -- context pages -----------------------------------------------------------------------------------


def test_context_is_read_in_pages_after_a_sequence_number():
    q = _queries(given(register(), *[append(f"m{i}") for i in range(2, 8)]))
    page, nxt = q.context("s1", 0, 3)
    assert [e.sequence_number for e in page] == [1, 2, 3] and nxt == 3
    page, nxt = q.context("s1", nxt, 3)
    assert [e.sequence_number for e in page] == [4, 5, 6] and nxt == 6
    page, nxt = q.context("s1", nxt, 3)
    assert [e.sequence_number for e in page] == [7] and nxt is None


def test_a_page_that_ends_exactly_at_the_last_entry_has_no_next_page():
    q = _queries(given(register(), append()))
    assert q.context("s1", 0, 2)[1] is None


def test_context_of_an_unknown_session_is_empty():
    assert _queries(given(register())).context("nope", 0, 10) == ([], None)


def test_entries_are_read_newest_first_a_page_at_a_time():
    q = _queries(given(register(), *[append(f"m{i}") for i in range(2, 12)]))
    assert [e.sequence_number for e in q.entries_newest_first("s1", 11, page=4)] == list(range(11, 0, -1))
    assert [e.sequence_number for e in q.entries_newest_first("s1", 5, page=4)] == [5, 4, 3, 2, 1]


def test_package_entries_are_reread_by_the_recorded_range():
    history = given(register(), *[append(f"m{i}") for i in range(2, 6)], request("bob"))
    q = _queries(history)
    view = q.handoff(handoff_ids(history)[0])
    assert (view.package.from_sequence, view.package.to_sequence) == (1, 2)  # the support package
    assert [(e.sequence_number, e.content) for e in q.package_entries(view)] == [
        (1, "Session registered by agent: alice"),
        (2, "m2"),
    ]


def test_an_empty_package_has_no_entries():
    import msgspec

    history = given(register(), request("bob"))
    q = _queries(history)
    view = q.handoff(handoff_ids(history)[0])
    empty = msgspec.structs.replace(view.package, from_sequence=None, to_sequence=None, entry_count=0)
    assert q.package_entries(msgspec.structs.replace(view, package=empty)) == []


# -- listings and cursors ----------------------------------------------------------------------------


def test_sessions_are_listed_newest_first_and_a_cursor_round_trips_through_every_page():
    q = _queries(*_sessions(5))
    seen, cursor = [], None
    while True:
        page = q.list_sessions(None, None, 2, cursor)
        seen += [s.session_key for s in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["s4", "s3", "s2", "s1", "s0"]


def test_sessions_can_be_listed_by_participant_and_status():
    histories = _sessions(3)
    histories[1] = given(close("alice", key="s1"), now=_at(10), prefix="c", after=histories[1])
    histories.append(given(register("bob", key="b1"), now=_at(9), prefix="b"))
    q = _queries(*histories)
    assert [s.session_key for s in q.list_sessions("alice", None, 10, None).items] == ["s2", "s1", "s0"]
    assert [s.session_key for s in q.list_sessions("alice", "active", 10, None).items] == ["s2", "s0"]
    assert [s.session_key for s in q.list_sessions(None, "closed", 10, None).items] == ["s1"]
    assert [s.session_key for s in q.list_sessions("bob", None, 10, None).items] == ["b1"]
    assert [s.session_key for s in q.list_sessions(None, None, 10, None).items] == ["b1", "s2", "s1", "s0"]
    assert q.list_sessions("carol", None, 10, None).items == []


def test_an_agents_inbox_lists_the_handoffs_addressed_to_it_by_status():
    h = given(register(), request("bob"), request("carol"), now=_at(1), prefix="x")
    h = given(accept(H1, "bob"), now=_at(2), prefix="y", after=h)
    q = _queries(h)
    first, second = handoff_ids(h)
    assert [v.handoff_id for v in q.list_handoffs("bob", None, None, 10, None).items] == [first]
    assert q.list_handoffs("bob", None, "pending", 10, None).items == []
    assert [v.handoff_id for v in q.list_handoffs("carol", None, "pending", 10, None).items] == [second]
    assert [v.handoff_id for v in q.list_handoffs(None, "alice", None, 10, None).items] == [first, second]
    assert [v.handoff_id for v in q.list_handoffs(None, None, "accepted", 10, None).items] == [first]
    assert [v.handoff_id for v in q.list_handoffs("carol", "alice", "pending", 10, None).items] == [second]
    assert q.list_handoffs("carol", "bob", None, 10, None).items == []


def test_handoffs_filtered_by_target_and_source_page_with_a_cursor():
    histories = [
        given(register(src, key=f"k{i}"), request("bob", key=f"k{i}"), now=_at(i), prefix=f"k{i}")
        for i, src in enumerate(["alice", "carol", "alice", "alice", "carol", "alice"])
    ]
    q = _queries(*histories)
    want = [handoff_ids(h)[0] for h in reversed(histories) if h[0].event.agent_from == "alice"]
    seen, cursor = [], None
    while True:
        page = q.list_handoffs("bob", "alice", None, 2, cursor)
        seen += [v.handoff_id for v in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == want


def test_a_cursor_is_opaque_url_safe_text_that_decodes_to_its_index_position():
    entry = keys.index_prefix("S*") + b"123\x00s1"
    cursor = encode_cursor(entry)
    assert cursor.isascii() and "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor, keys.index_prefix("S*")) == entry


def test_a_cursor_of_another_listing_is_an_invalid_argument():
    q = _queries(*_sessions(3))
    cursor = q.list_sessions(None, None, 1, None).next_cursor
    with pytest.raises(InvalidArgument) as caught:
        q.list_sessions("alice", None, 1, cursor)
    assert caught.value.details == {"field": "cursor"}
    with pytest.raises(InvalidArgument):
        q.list_handoffs(None, None, None, 1, cursor)


@pytest.mark.parametrize("cursor", ["%%%", "é", "abc", "A"])
def test_a_garbled_cursor_is_an_invalid_argument(cursor):
    with pytest.raises(InvalidArgument):
        _queries(*_sessions(2)).list_sessions(None, None, 1, cursor)
