"""The embedded engine's synchronous write path (`write_now`) on the in-memory store: batches and retries."""

from __future__ import annotations

from handoff.engine.engine import Engine
from handoff.kernel.errors import IdempotencyMismatch, SessionNotFound, VersionConflict
from handoff.storage.kv import InMemoryKeyValue

from .strategies import Clock, new_ids
from .support import accept, append, complete, register, request


def _engine() -> Engine:
    return Engine(InMemoryKeyValue(), clock=Clock(), new_id=new_ids(), sync=False)


def test_a_retry_with_the_same_idempotency_key_returns_the_first_result_and_writes_nothing():
    engine = _engine()
    engine.write_now([register()])
    (first,) = engine.write_now([append("x", idempotency_key="k")])
    items = list(engine.kv.items())
    (again,) = engine.write_now([append("x", idempotency_key="k")])
    assert again.replayed and not first.replayed
    assert again.envelope == first.envelope and again.receipt == first.receipt
    assert list(engine.kv.items()) == items


def test_a_retry_within_the_same_batch_is_replayed_too():
    engine = _engine()
    results = engine.write_now([register(), append("x", idempotency_key="k"), append("x", idempotency_key="k")])
    assert results[2].replayed and results[2].envelope == results[1].envelope
    assert engine.log.position() == 2


def test_a_retry_with_other_arguments_is_an_idempotency_mismatch_and_writes_nothing():
    engine = _engine()
    engine.write_now([register(), append("x", idempotency_key="k")])
    items = list(engine.kv.items())
    (result,) = engine.write_now([append("y", idempotency_key="k")])
    assert isinstance(result, IdempotencyMismatch)
    assert list(engine.kv.items()) == items


def test_a_refused_command_in_a_batch_leaves_the_others_of_the_batch_written():
    engine = _engine()
    results = engine.write_now([register(), append(key="missing"), append("a"), append("b", expected_version=1)])
    assert isinstance(results[1], SessionNotFound) and isinstance(results[3], VersionConflict)
    assert [r.envelope.version for r in (results[0], results[2])] == [1, 2]
    assert engine.session_view("s1").version == 2
    assert engine.log.position() == 2


def test_each_command_of_a_batch_is_decided_against_the_state_the_previous_ones_left():
    engine = _engine()
    results = engine.write_now([register(), append("a"), request("bob", "full_handoff")])
    hid = results[2].envelope.event.handoff_id
    results = engine.write_now([accept(hid), complete(hid), append("too late")])
    assert results[1].receipt.session.status == "completed"
    assert results[2].code == "SESSION_NOT_ACTIVE"
    assert engine.session_view("s1").status == "completed"
    assert engine.handoff_view(hid).status == "completed"


def test_the_package_of_a_request_covers_the_entries_written_earlier_in_the_same_batch():
    engine = _engine()
    results = engine.write_now([register(), append("one"), append("two"), request("bob")])
    package = results[3].envelope.event.package
    assert (package.from_sequence, package.to_sequence, package.entry_count) == (1, 3, 3)
    assert "last message: two" in package.summary  # the summary too: held appends fold before a package
    entries = engine.queries.package_entries(engine.handoff_view(results[3].envelope.event.handoff_id))
    assert [e.content for e in entries][1:] == ["one", "two"]
