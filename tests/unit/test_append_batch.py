"""`AppendContextBatch`: one command, one `ContextAppended` per entry, all or none (kernel and engine)."""

from __future__ import annotations

import pytest

from handoff.engine.engine import Engine
from handoff.kernel.codec import verify_record
from handoff.kernel.commands import AppendContextBatch, ContextItem
from handoff.kernel.decide import execute_all
from handoff.kernel.errors import (
    IdempotencyMismatch,
    InvalidArgument,
    LimitExceeded,
    NotPermitted,
    SessionNotActive,
    SessionNotFound,
    VersionConflict,
)
from handoff.kernel.events import ContextAppended
from handoff.kernel.principal import Principal
from handoff.kernel.types import Limits
from handoff.storage.kv import InMemoryKeyValue
from projections.queries import Queries
from projections.replay import fold_events

from .strategies import Clock, new_ids
from .support import KEY, append, close, ctx, given, register, state_of


def batch(*contents: str, key: str = KEY, **kw: object) -> AppendContextBatch:
    items = [ContextItem(context_type="file", content=c, metadata={"n": i}) for i, c in enumerate(contents)]
    return AppendContextBatch(session_key=key, entries=items, **kw)  # type: ignore[arg-type]


def test_a_batch_appends_one_entry_per_item_with_consecutive_sequence_numbers_and_versions():
    history = given(register(), append("first"))
    state, sealed = execute_all(state_of(history), batch("a", "b", "c"), ctx())
    events = [env.event for env, _ in sealed]
    assert all(isinstance(e, ContextAppended) and e.context_type == "file" for e in events)
    assert [e.sequence_number for e in events] == [3, 4, 5]  # type: ignore[union-attr]
    assert [env.version for env, _ in sealed] == [3, 4, 5]
    assert [e.content for e in events] == ["a", "b", "c"]  # type: ignore[union-attr]
    assert [e.metadata for e in events] == [{"n": 0}, {"n": 1}, {"n": 2}]  # type: ignore[union-attr]
    assert (state.version, state.last_sequence) == (5, 5)


def test_the_events_of_a_batch_extend_the_hash_chain_one_link_each():
    history = given(register())
    _, sealed = execute_all(state_of(history), batch("a", "b"), ctx())
    envelopes = [*history, *(env for env, _ in sealed)]
    assert [e.prev_hash for e in envelopes[1:]] == [e.hash for e in envelopes[:-1]]
    assert [verify_record(record)[1] for _, record in sealed] == [None, None]


def test_without_an_agent_the_entries_are_the_holders():
    _, sealed = execute_all(state_of(given(register("alice"))), batch("a"), ctx())
    assert sealed[0][0].actor == "alice" and sealed[0][0].event.agent == "alice"  # type: ignore[union-attr]


def test_a_batch_on_a_session_that_does_not_exist_or_is_closed_is_refused():
    with pytest.raises(SessionNotFound):
        execute_all(None, batch("a"), ctx())
    with pytest.raises(SessionNotActive):
        execute_all(state_of(given(register(), close())), batch("a"), ctx())


def test_a_batch_with_a_stale_expected_version_is_refused():
    with pytest.raises(VersionConflict):
        execute_all(state_of(given(register())), batch("a", expected_version=0), ctx())


def test_an_auditor_and_a_non_member_may_not_append_a_batch():
    state = state_of(given(register("alice")))
    with pytest.raises(NotPermitted):
        execute_all(state, batch("a", principal=Principal(agent="carol", role="agent")), ctx())
    with pytest.raises(NotPermitted):
        execute_all(state, batch("a", principal=Principal(agent="alice", role="auditor")), ctx())
    _, sealed = execute_all(state, batch("a", principal=Principal(agent="alice", role="agent")), ctx())
    assert sealed[0][0].actor == "alice"


def test_an_empty_batch_is_an_invalid_argument_and_a_long_one_is_over_the_limit():
    state = state_of(given(register()))
    with pytest.raises(InvalidArgument):
        execute_all(state, batch(), ctx())
    with pytest.raises(LimitExceeded):
        execute_all(state, batch("a", "b", "c"), ctx(limits=Limits(batch_entries_max=2)))


def test_one_entry_over_a_limit_refuses_the_whole_batch():
    state = state_of(given(register()))
    with pytest.raises(LimitExceeded) as caught:
        execute_all(state, batch("ok", "x" * 11), ctx(limits=Limits(content_max_bytes=10)))
    assert caught.value.details["field"] == "entries[1].content"
    with pytest.raises(LimitExceeded):
        execute_all(state, batch("abcdef", "ghijkl"), ctx(limits=Limits(batch_bytes_max=20)))


# -- the embedded engine ---------------------------------------------------------------------------


def _engine() -> Engine:
    return Engine(InMemoryKeyValue(), clock=Clock(), new_id=new_ids(), sync=False)


def test_the_engine_commits_a_batch_in_one_write_and_reports_its_last_event():
    engine = _engine()
    engine.write_now([register()])
    (outcome,) = engine.write_now([batch("a", "b", "c")])
    assert not isinstance(outcome, Exception)
    assert (outcome.events, outcome.envelope.version, outcome.receipt.session.version) == (3, 4, 4)
    assert engine.position == engine.log.position() == 4
    entries, _ = Queries(engine.kv).context(KEY, 0, 10)
    assert [(e.sequence_number, e.context_type) for e in entries][1:] == [(2, "file"), (3, "file"), (4, "file")]
    assert engine.session_view(KEY).version == 4


def test_commands_after_a_batch_in_the_same_engine_batch_continue_its_numbering():
    engine = _engine()
    results = engine.write_now([register(), batch("a", "b"), append("after")])
    assert [r.envelope.version for r in results] == [1, 3, 4]  # type: ignore[union-attr]


def test_a_refused_batch_writes_nothing():
    engine = _engine()
    engine.write_now([register()])
    (refusal,) = engine.write_now([batch("a", "b", expected_version=7)])
    assert isinstance(refusal, VersionConflict)
    assert engine.log.position() == 1 and engine.session_view(KEY).version == 1


def test_a_retried_batch_returns_the_first_outcome_and_a_changed_one_is_a_mismatch():
    engine = _engine()
    engine.write_now([register()])
    (first,) = engine.write_now([batch("a", "b", idempotency_key="k")])
    (again,) = engine.write_now([batch("a", "b", idempotency_key="k")])
    assert not isinstance(first, Exception) and not isinstance(again, Exception)
    assert again.replayed and again.envelope == first.envelope and again.receipt == first.receipt
    assert engine.log.position() == 3
    (changed,) = engine.write_now([batch("a", "c", idempotency_key="k")])
    assert isinstance(changed, IdempotencyMismatch)


def test_replaying_the_log_of_a_batch_gives_the_same_views():
    engine = _engine()
    engine.write_now([register(), batch("a", "b"), append("c")])
    replayed = InMemoryKeyValue()
    fold_events(replayed, engine.log.stream(KEY))
    again = Queries(replayed, engine.log)  # views only: the entries' content is read from the log they came from
    assert again.context(KEY, 0, 10) == Queries(engine.kv).context(KEY, 0, 10)
    assert again.session(KEY) == Queries(engine.kv).session(KEY)
    assert list(replayed.scan(b"C:")) == list(engine.kv.scan(b"C:"))  # the stored views, byte for byte
