"""Properties of the kernel and the projections over random command sequences (see `strategies`)."""

from __future__ import annotations

import shutil
import tempfile
from itertools import groupby

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff.engine.engine import Engine
from handoff.kernel.codec import check_record, compute_hash, decode_envelope, encode_envelope
from handoff.kernel.errors import ERROR_CODES, HandoffError
from handoff.kernel.events import GENESIS_HASH, entry_sequence
from handoff.kernel.state import evolve
from handoff.storage.kv import InMemoryKeyValue, RocksKeyValue
from projections.replay import fold_events

from .strategies import Clock, new_ids, programs, run_program, to_command

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VIEW_PREFIXES = (b"S:", b"Y:", b"C:", b"H:", b"I:")


def _streams(log):
    """The log split into per-session streams, in order."""
    by_session = {}
    for env in log:
        by_session.setdefault(env.session_key, []).append(env)
    return by_session


def _fold_state(envelopes, state=None):
    for env in envelopes:
        state = evolve(state, env)
    return state


def _all_items(kv):
    return list(kv.scan(b""))


def _fresh_fold(envelopes, batch_size=1000):
    kv = InMemoryKeyValue()
    fold_events(kv, envelopes, batch_size=batch_size)
    return kv


@PROPERTY
@given(programs)
def test_every_event_survives_the_codec_and_its_record_is_genuine(program):
    for env in run_program(program).log:
        record = encode_envelope(env)
        assert check_record(record) is None
        assert decode_envelope(record) == env


@PROPERTY
@given(programs)
def test_versions_and_sequence_numbers_are_gap_free_and_the_hash_chain_holds(program):
    model = run_program(program)
    for key, stream in _streams(model.log).items():
        assert [env.version for env in stream] == list(range(1, len(stream) + 1))
        sequences = [s for s in map(lambda e: entry_sequence(e.event), stream) if s is not None]
        assert sequences == list(range(1, len(sequences) + 1))
        assert [env.prev_hash for env in stream] == [GENESIS_HASH] + [env.hash for env in stream[:-1]]
        assert all(compute_hash(env) == env.hash for env in stream)
        state = model.states[key]
        assert (state.version, state.last_sequence, state.last_hash) == (len(stream), len(sequences), stream[-1].hash)
        view = model.kv.get(b"S:" + key.encode())
        assert view is not None
        context_keys = [k for k, _ in model.kv.scan(b"C:" + key.encode() + b"\x00")]
        assert [int(k.rsplit(b"\x00", 1)[1]) for k in context_keys] == sequences


@PROPERTY
@given(programs)
def test_every_command_is_either_accepted_or_a_refusal_with_a_contract_code(program):
    model = run_program(program)
    assert model.accepted + len(model.refused) == len(program)
    assert {exc.code for _, exc in model.refused} <= set(ERROR_CODES)


@PROPERTY
@given(programs, st.data())
def test_folding_a_prefix_then_the_rest_equals_folding_everything_for_the_decision_state(program, data):
    model = run_program(program)
    for key, stream in _streams(model.log).items():
        cut = data.draw(st.integers(0, len(stream)), label=f"cut {key}")
        assert _fold_state(stream[cut:], _fold_state(stream[:cut])) == _fold_state(stream) == model.states[key]


@PROPERTY
@given(programs, st.data())
def test_folding_a_prefix_then_the_rest_equals_folding_everything_for_the_projections(program, data):
    model = run_program(program)
    cut = data.draw(st.integers(0, len(model.log)), label="cut")
    sizes = data.draw(st.tuples(st.integers(1, 7), st.integers(1, 7)), label="batch sizes")
    split = InMemoryKeyValue()
    fold_events(split, model.log[:cut], batch_size=sizes[0])
    fold_events(split, model.log[cut:], batch_size=sizes[1])
    whole = _fresh_fold(model.log)
    assert list(split.items()) == list(whole.items()) == list(model.kv.items())


@PROPERTY
@given(programs, st.data())
def test_a_log_with_redelivered_events_folds_in_runs_to_the_same_projections(program, data):
    # at-least-once delivery: some events come again right after themselves or later; the runs of
    # appends that fold_events folds at once must skip them exactly as event-by-event folding does
    model = run_program(program)
    stream = list(model.log)
    for _ in range(data.draw(st.integers(0, 6), label="redeliveries") if stream else 0):
        i = data.draw(st.integers(0, len(stream) - 1), label="redelivered")
        stream.insert(data.draw(st.integers(i + 1, len(stream)), label="at"), stream[i])
    runs = InMemoryKeyValue()
    fold_events(runs, stream, batch_size=data.draw(st.integers(1, 50), label="batch"))
    assert list(runs.items()) == list(model.kv.items())


@PROPERTY
@given(programs, st.data())
def test_reapplying_an_applied_event_changes_nothing(program, data):
    model = run_program(program)
    if not model.log:
        return
    # the decision state, mid-stream and at the end
    for stream in _streams(model.log).values():
        upto = data.draw(st.integers(1, len(stream)), label="applied")
        state = _fold_state(stream[:upto])
        again = data.draw(st.integers(0, upto - 1), label="reapplied")
        assert evolve(state, stream[again]) is state
    # the projections: any one event again, then the whole log again
    kv = _fresh_fold(model.log)
    before = list(kv.items())
    fold_events(kv, [model.log[data.draw(st.integers(0, len(model.log) - 1), label="one again")]])
    assert list(kv.items()) == before
    fold_events(kv, model.log, batch_size=data.draw(st.integers(1, 9), label="batch"))
    assert list(kv.items()) == before


def _run_engine(engine, program, chunks):
    """Drive an engine with the program in batches; (events appended, commands refused); refusals write nothing."""
    accepted = refused = 0
    ops = iter(program)
    for size in chunks:
        chunk = [op for _, op in zip(range(size), ops, strict=False)]
        if not chunk:
            break
        before = _all_items(engine.kv)
        position = engine.log.position()
        commands = [to_command(op, engine.state) for op in chunk]
        results = engine.write_now(commands)
        errors = [r for r in results if isinstance(r, HandoffError)]
        written = [r for r in results if not isinstance(r, HandoffError) and not r.replayed]
        accepted += sum(r.events for r in written)  # events: a batch appends several
        refused += len(errors)
        assert engine.log.position() == position + sum(r.events for r in written)
        if not written:  # refusals and idempotent replays write nothing at all
            assert _all_items(engine.kv) == before
    return accepted, refused


def _check_engine_against_its_log(engine):
    shown = engine.log.keys.reveal  # the events in the clear, as the engine folded them
    envelopes = [shown(decode_envelope(record)) for _, _, _, record in engine.log.global_records()]
    assert [check_record(record) for *_, record in engine.log.global_records()] == [None] * len(envelopes)
    fresh = _fresh_fold(envelopes)
    live = [(k, v) for k, v in _all_items(engine.kv) if k.startswith(VIEW_PREFIXES)]
    assert live == list(fresh.items())
    for key, stream in groupby(sorted(envelopes, key=lambda e: (e.session_key, e.version)), lambda e: e.session_key):
        assert engine.log.state(key) == _fold_state(list(stream))
    assert engine.log.position() == len(envelopes)
    return envelopes


@settings(max_examples=50, deadline=None)
@given(programs, st.lists(st.integers(1, 6), min_size=40, max_size=40))
def test_the_engine_in_memory_gives_the_projections_of_a_fresh_fold_of_its_log(program, chunks):
    engine = Engine(InMemoryKeyValue(), clock=Clock(), new_id=new_ids(), sync=False)
    accepted, _ = _run_engine(engine, program, chunks)
    assert len(_check_engine_against_its_log(engine)) == accepted


@settings(max_examples=15, deadline=None)
@given(programs, st.lists(st.integers(1, 6), min_size=40, max_size=40))
def test_the_engine_on_rocksdb_gives_the_projections_of_a_fresh_fold_of_its_log(program, chunks):
    path = tempfile.mkdtemp(prefix="handoff-prop-")
    try:
        kv = RocksKeyValue(path)
        try:
            engine = Engine(kv, clock=Clock(), new_id=new_ids(), sync=False)
            accepted, _ = _run_engine(engine, program, chunks)
            assert len(_check_engine_against_its_log(engine)) == accepted
        finally:
            kv.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json, max_size=4), st.text(min_size=1, max_size=40))
def test_any_json_metadata_and_content_survive_the_codec(metadata, content):
    from .support import append, register
    from .support import given as history_of

    for env in history_of(register(metadata=metadata), append(content, metadata=metadata)):
        record = encode_envelope(env)
        assert check_record(record) is None
        assert decode_envelope(record) == env
