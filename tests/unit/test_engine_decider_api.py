"""The engine's API for a decider that commits elsewhere first: `decide_batch`, then `apply_committed`."""

from __future__ import annotations

from handoff.engine.engine import Engine
from handoff.kernel.events import Envelope
from handoff.storage.kv import InMemoryKeyValue
from projections.projector import Changes

from .strategies import Clock, new_ids
from .support import append, register


def _engine() -> Engine:
    return Engine(InMemoryKeyValue(), clock=Clock(), new_id=new_ids(), sync=False)


def test_a_decided_batch_writes_nothing_and_moves_nothing_until_it_is_applied():
    engine = _engine()
    results, batch = engine.decide_batch([register(), append("a")])
    assert [r.envelope.version for r in results] == [1, 2]
    assert list(engine.kv.items()) == []
    assert engine.log.position() == 0 and engine.position == 0
    assert [(e.session_key, e.version) for e in batch.envelopes] == [("s1", 1), ("s1", 2)]
    assert set(batch.records) == {("s1", 1), ("s1", 2)}


def test_an_applied_batch_moves_the_position_and_tells_the_listeners_what_it_committed():
    engine = _engine()
    heard: list[tuple[list[Envelope], Changes]] = []
    engine.listeners.append(lambda envelopes, changes: heard.append((envelopes, changes)))
    _, batch = engine.decide_batch([register(), append("a")])
    engine.kv.write(batch.writes)
    engine.apply_committed(batch)
    assert engine.position == engine.log.position() == 2
    assert [e.version for e in heard[0][0]] == [1, 2]
    assert engine.session_view("s1").version == 2
    (next_result,), _ = engine.decide_batch([append("b")])
    assert next_result.envelope.version == 3


def test_a_batch_never_applied_was_never_decided_the_next_batch_starts_from_the_store():
    engine = _engine()
    engine.decide_batch([register(), append("lost")])
    (again, following), batch = engine.decide_batch([register(), append("kept")])
    assert (again.envelope.version, following.envelope.version) == (1, 2)
    assert batch.envelopes[1].event.content == "kept"
