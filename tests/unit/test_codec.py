"""The wire codec: canonical bytes, the per-session hash chain, tamper detection and upcasting."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from handoff.kernel import codec
from handoff.kernel.codec import (
    check_record,
    compute_hash,
    current_schema_version,
    decode_envelope,
    encode_envelope,
)
from handoff.kernel.errors import CodecError
from handoff.kernel.events import EVENT_TYPES, GENESIS_HASH, ContextAppended
from handoff.kernel.package import estimate_tokens
from handoff.kernel.upcasters import context_appended_v1_to_v2

from .support import H1, accept, append, given, register, request

# The codec's internals these tests build tampered or old records with, and its quick check.
canonical = codec._canonical  # noqa: SLF001 - the encoder of the canonical form
signed = codec.SignedRecord
genuine = codec._genuine  # noqa: SLF001 - the quick test of a record's hash


def _history():
    return given(
        register(metadata={"b": 1, "a": [1, 2.5, None]}),
        append("héllo ✓", idempotency_key="k"),
        request("bob"),
        accept(H1),
    )


def test_an_envelope_survives_encoding_and_decoding():
    for env in _history():
        assert decode_envelope(encode_envelope(env)) == env


def test_an_encoded_record_is_canonical_and_genuine():
    for env in _history():
        record = encode_envelope(env)
        assert check_record(record) is None
        assert canonical.encode(msgspec.json.decode(record)) == record


def test_the_wire_form_has_the_envelope_fields_beside_the_data():
    wire = msgspec.json.decode(encode_envelope(_history()[1]))
    assert list(wire) == sorted(wire)
    assert wire["type"] == "ContextAppended" and wire["schemaVersion"] == 2 and wire["version"] == 2
    assert wire["idempotencyKey"] == "k"
    assert wire["data"]["sequenceNumber"] == 2


def test_a_record_without_an_idempotency_key_omits_it():
    assert b"idempotencyKey" not in encode_envelope(_history()[0])


def test_the_first_event_links_to_the_genesis_hash_and_each_next_to_its_predecessor():
    history = _history()
    assert history[0].prev_hash == GENESIS_HASH
    for before, after in zip(history, history[1:], strict=False):
        assert after.prev_hash == before.hash


def test_the_hash_covers_the_envelope_and_the_previous_hash():
    env = _history()[1]
    assert compute_hash(env) == env.hash
    assert compute_hash(msgspec.structs.replace(env, prev_hash="1" * 64)) != env.hash
    assert compute_hash(msgspec.structs.replace(env, actor="mallory")) != env.hash


def test_a_flipped_byte_anywhere_in_a_record_is_caught():
    record = encode_envelope(_history()[2])
    for i in range(len(record)):
        tampered = bytearray(record)
        tampered[i] ^= 0x01
        assert check_record(bytes(tampered)) is not None, f"flip at byte {i} went unnoticed"


def test_a_recomputed_hash_does_not_hide_a_change_of_the_previous_hash():
    env = msgspec.structs.replace(_history()[1], prev_hash="1" * 64)
    # The record alone is consistent (the hash was recomputed) ...
    resealed = codec.seal(env)
    assert check_record(encode_envelope(resealed)) is None
    # ... but it no longer links to its predecessor, which is what a chain check sees.
    assert resealed.prev_hash != _history()[0].hash


def test_a_non_canonical_record_with_the_same_content_is_not_genuine():
    record = encode_envelope(_history()[0])
    spaced = record.replace(b'","', b'", "', 1)
    assert check_record(spaced) == "record is not in canonical form (bytes were altered)"


def test_non_canonical_data_is_caught_even_when_the_rest_is_canonical():
    env = _history()[0]
    data = codec.encode_data(env.event).replace(b":", b": ", 1)
    raw = canonical.encode(signed(**codec._fields(env, data), hash=compute_hash(env, data)))
    assert check_record(raw) == "record is not in canonical form (bytes were altered)"


def test_a_record_with_an_unknown_envelope_field_is_not_genuine():
    wire = msgspec.json.decode(encode_envelope(_history()[0]))
    wire["extra"] = 1
    assert check_record(canonical.encode(wire)).startswith("hash mismatch")
    del wire["hash"]  # even resealed with the extra field, the envelope's typed decoding refuses it
    wire["hash"] = hashlib.sha256(canonical.encode(wire)).hexdigest()
    assert check_record(canonical.encode(wire)).startswith("undecodable")


def test_garbage_is_not_a_record():
    assert check_record(b"not json").startswith("undecodable")
    with pytest.raises(CodecError):
        decode_envelope(b"not json")


def test_decoding_an_unknown_event_type_is_a_codec_error():
    wire = msgspec.json.decode(encode_envelope(_history()[0]))
    wire["type"] = "SessionTeleported"
    with pytest.raises(CodecError, match="unknown event type"):
        decode_envelope(canonical.encode(wire))


def test_decoding_a_payload_of_the_wrong_shape_is_a_codec_error():
    wire = msgspec.json.decode(encode_envelope(_history()[1]))
    wire["data"]["sequenceNumber"] = "two"
    with pytest.raises(CodecError, match="undecodable"):
        decode_envelope(canonical.encode(wire))


def test_an_event_payload_tolerates_a_field_added_by_a_newer_writer():
    wire = msgspec.json.decode(encode_envelope(_history()[1]))
    wire["data"]["addedLater"] = {"x": 1}
    assert decode_envelope(canonical.encode(wire)).event == _history()[1].event


def test_every_event_type_is_at_schema_version_one_today_but_context_appended_at_two():
    expected = {**dict.fromkeys(EVENT_TYPES, 1), "ContextAppended": 2}
    assert {name: current_schema_version(name) for name in EVENT_TYPES} == expected


# -- upcasting: ContextAppended v2 added ``tokens``; v1 records, as the previous version wrote them, are upcast


def as_written_by_v1(record: bytes) -> bytes:
    """A ContextAppended record re-sealed as the previous version wrote it: schemaVersion 1, no tokens."""
    wire = msgspec.json.decode(record)
    del wire["data"]["tokens"], wire["hash"]
    wire["schemaVersion"] = 1
    wire["hash"] = hashlib.sha256(canonical.encode(wire)).hexdigest()
    return canonical.encode(wire)


def test_a_version_one_record_is_upcast_to_the_current_schema_when_decoded():
    current = _history()[1]
    record = as_written_by_v1(encode_envelope(current))
    env = decode_envelope(record)
    assert env.event == current.event  # tokens re-derived by the upcaster
    assert env.event.tokens == estimate_tokens(current.event.content)
    assert env.schema_version == 1  # the envelope still says what was written
    assert check_record(record) is None  # and the stored bytes stay genuine


def test_a_missing_upcaster_is_a_codec_error(monkeypatch):
    monkeypatch.delitem(codec.UPCASTERS, ("ContextAppended", 1))
    with pytest.raises(CodecError, match="no upcaster"):
        decode_envelope(as_written_by_v1(encode_envelope(_history()[1])))


def test_a_record_from_a_newer_version_is_a_codec_error():
    wire = msgspec.json.decode(encode_envelope(_history()[1]))
    del wire["hash"]
    wire["schemaVersion"] = 9
    wire["hash"] = hashlib.sha256(canonical.encode(wire)).hexdigest()
    with pytest.raises(CodecError, match="newer than this package"):
        decode_envelope(canonical.encode(wire))


def test_upcasters_run_one_version_at_a_time(monkeypatch):
    monkeypatch.setattr(ContextAppended, "SCHEMA_VERSION", 3)
    steps = []
    monkeypatch.setitem(codec.UPCASTERS, ("ContextAppended", 1), lambda d: steps.append(1) or {**d, "v": 2})
    monkeypatch.setitem(codec.UPCASTERS, ("ContextAppended", 2), lambda d: steps.append(2) or {**d, "w": d["v"]})
    assert codec.upcast("ContextAppended", 1, {"x": 0}) == {"x": 0, "v": 2, "w": 2}
    assert steps == [1, 2]


def test_monkeypatched_upcasters_leave_the_codec_as_it_was():
    assert codec.UPCASTERS == {("ContextAppended", 1): context_appended_v1_to_v2}
    assert codec.EVENT_TYPES["ContextAppended"] is ContextAppended
    assert ContextAppended.SCHEMA_VERSION == 2


def test_the_record_the_write_path_returns_is_the_canonical_encoding_of_its_sealed_envelope():
    from handoff.kernel.decide import Ctx, execute_encoded

    from .support import PACKAGE

    state = None
    ids = iter(f"{n:032x}" for n in range(1, 100))
    tricky = 'k,"eventId":"x\\"}'  # an idempotency key that imitates the fields the record is spliced at
    for command in (register(), append('héllo ✓\n"q"', idempotency_key=tricky), request("bob")):
        ctx = Ctx(now="2026-01-02T03:04:05.678Z", new_id=lambda: next(ids), package=PACKAGE)
        state, env, record = execute_encoded(state, command, ctx)
        assert record == encode_envelope(env)
        assert env.hash == compute_hash(env)


def test_a_record_whose_metadata_holds_hash_keys_is_genuine_and_a_flip_in_them_is_caught():
    history = given(register(), append(metadata={"hash": "x" * 64, "nested": {"hash": '","hash":"'}}))
    record = encode_envelope(history[1])
    env, why = codec.verify_record(record)
    assert why is None and env == history[1]
    at = record.index(b'"x')
    tampered = record[: at + 1] + b"y" + record[at + 2 :]
    assert check_record(tampered) is not None


def test_a_genuine_record_passes_the_quick_test_without_the_thorough_one():
    history = given(
        register(), append("héllo ✓", idempotency_key="k"), append(metadata={"hash": "x" * 64}), request("bob")
    )
    # The quick test alone must say yes: falling through to the thorough one too costs 2.5 times as much.
    for env in history:
        assert genuine(encode_envelope(env)) == env


def test_the_quick_test_refuses_a_hash_field_that_is_not_the_records_own():
    env = _history()[1]
    record = encode_envelope(env)
    for wrong in (env.hash[:-1], "0" * 64):  # one hex digit cut (still valid JSON), and another hash
        tampered = record.replace(env.hash.encode(), wrong.encode())
        assert genuine(tampered) is None
        assert check_record(tampered).startswith("hash mismatch")
