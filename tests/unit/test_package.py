"""The handoff package: built within its token budget, one contiguous newest range, hashed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from handoff.kernel.package import (
    ENTRY_OVERHEAD,
    PackageEntry,
    PackageHead,
    build_package,
    estimate_tokens,
    package_sha256,
)

HEAD = PackageHead(summary="Session s1: a summary.", key_points=["Decision: ship it"], participants=["alice", "bob"])


def _entries(*sizes: int) -> list[PackageEntry]:
    """Entries 1..n whose contents have the given lengths in characters."""
    return [
        PackageEntry(
            sequence_number=i,
            context_type="message",
            agent="alice",
            content="x" * size,
            created_at="2026-11-27T10:00:00.000Z",
        )
        for i, size in enumerate(sizes, start=1)
    ]


def _newest_first(entries):
    return list(reversed(entries))


def _head_cost(head: PackageHead) -> int:
    return estimate_tokens(head.summary) + sum(estimate_tokens(t) for t in head.key_points + head.participants)


def test_tokens_are_estimated_at_four_characters_each_rounded_up():
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]


def test_an_entry_costs_its_content_plus_a_fixed_header():
    assert _entries(40)[0].tokens() == ENTRY_OVERHEAD + 10


def test_everything_fits_in_a_large_budget_and_the_range_covers_all_entries():
    entries = _entries(10, 20, 30)
    record, chosen = build_package(HEAD, _newest_first(entries), 4000)
    assert chosen == entries
    assert (record.from_sequence, record.to_sequence, record.entry_count) == (1, 3, 3)
    assert record.estimated_tokens == _head_cost(HEAD) + sum(e.tokens() for e in entries)
    assert (record.summary, record.key_points, record.participants) == (
        HEAD.summary,
        HEAD.key_points,
        HEAD.participants,
    )


def test_the_newest_entries_that_fit_are_kept_oldest_first():
    entries = _entries(400, 400, 400, 400)  # 108 tokens each
    record, chosen = build_package(HEAD, _newest_first(entries), 250)
    assert [e.sequence_number for e in chosen] == [3, 4]
    assert (record.from_sequence, record.to_sequence) == (3, 4)
    assert record.estimated_tokens <= 250


def test_the_range_stops_at_the_first_entry_that_does_not_fit_so_it_stays_contiguous():
    entries = _entries(4, 4000, 4)  # the middle one is too big; the oldest would fit but is not taken
    record, chosen = build_package(HEAD, _newest_first(entries), 300)
    assert [e.sequence_number for e in chosen] == [3]
    assert (record.from_sequence, record.to_sequence, record.entry_count) == (3, 3, 1)


def test_a_package_is_empty_when_not_even_the_newest_entry_fits():
    record, chosen = build_package(HEAD, _newest_first(_entries(10, 4000)), 200)
    assert chosen == []
    assert (record.from_sequence, record.to_sequence, record.entry_count) == (None, None, 0)
    assert record.estimated_tokens == _head_cost(HEAD)


def test_a_package_of_a_session_without_entries_is_empty():
    record, chosen = build_package(HEAD, [], 4000)
    assert chosen == [] and record.from_sequence is None


def test_key_points_are_dropped_from_the_end_before_the_summary_is_cut():
    head = PackageHead(summary="short", key_points=["a" * 100, "b" * 100, "c" * 100], participants=["alice"])
    record, _ = build_package(head, [], 100)  # the head may use 50 tokens: 2 + 2 + 25 each
    assert record.key_points == ["a" * 100]
    assert record.summary == "short"


def test_a_summary_too_long_for_half_the_budget_is_cut_with_an_ellipsis():
    head = PackageHead(summary="s" * 1000, key_points=["k"], participants=["alice"])
    record, _ = build_package(head, [], 100)
    assert record.key_points == []
    assert record.summary.endswith("…") and len(record.summary) < 1000
    assert _head_cost(PackageHead(summary=record.summary, key_points=[], participants=["alice"])) <= 50


def test_the_recorded_sha256_can_be_derived_again_from_the_record_and_its_entries():
    record, chosen = build_package(HEAD, _newest_first(_entries(10, 20)), 4000)
    assert package_sha256(record, chosen) == record.sha256
    assert len(record.sha256) == 64


def test_the_sha256_changes_when_any_entry_changes():
    record, chosen = build_package(HEAD, _newest_first(_entries(10, 20)), 4000)
    edited = [
        chosen[0],
        PackageEntry(
            sequence_number=2, context_type="message", agent="alice", content="y" * 20, created_at=chosen[1].created_at
        ),
    ]
    assert package_sha256(record, edited) != record.sha256


def test_building_the_same_package_twice_gives_the_same_hash():
    first, _ = build_package(HEAD, _newest_first(_entries(10, 20)), 4000)
    second, _ = build_package(HEAD, _newest_first(_entries(10, 20)), 4000)
    assert first == second


def test_many_long_participant_names_do_not_push_the_package_over_its_budget():
    head = PackageHead(summary="s" * 50, key_points=[], participants=[f"{i}" + "a" * 99 for i in range(6)])
    record, _ = build_package(head, [], 100)
    assert record.estimated_tokens <= 100
    assert record.participants == head.participants[:2]  # the first to take part are kept


_names = st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=100)


@settings(max_examples=100, deadline=None)
@given(
    summary=st.text(max_size=3000),
    key_points=st.lists(st.text(max_size=300), max_size=8),
    participants=st.lists(_names, max_size=12, unique=True),
    sizes=st.lists(st.integers(1, 5000), max_size=12),
    budget=st.integers(100, 5000),
)
def test_a_package_always_keeps_its_budget_and_a_contiguous_newest_range(
    summary, key_points, participants, sizes, budget
):
    entries = _entries(*sizes)
    head = PackageHead(summary=summary, key_points=key_points, participants=participants)
    record, chosen = build_package(head, _newest_first(entries), budget)
    assert record.estimated_tokens <= budget
    assert chosen == entries[len(entries) - len(chosen) :]
    assert record.entry_count == len(chosen)
    assert package_sha256(record, chosen) == record.sha256
    assert record.estimated_tokens == _head_cost(
        PackageHead(summary=record.summary, key_points=record.key_points, participants=record.participants)
    ) + sum(e.tokens() for e in chosen)
