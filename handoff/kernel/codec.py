"""The wire codec of events: canonical JSON, the per-session hash chain, and schema upcasting.

Wire form of an event (keys sorted, no whitespace)::

    {"actor":..,"data":{..},"eventId":..,"hash":..,"idempotencyKey":..,"occurredAt":..,
     "prevHash":..,"schemaVersion":1,"sessionKey":..,"type":"ContextAppended","version":7}

``hash`` is the SHA-256 of the same object without ``hash``. Because the encoding is canonical, a
record whose bytes differ in any way from the re-encoding of what it decodes to is not genuine; see
`check_record`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from handoff.kernel.errors import CodecError
from handoff.kernel.events import EVENT_TYPES, ContextAppended, Envelope, Event
from handoff.kernel.types import AgentId, SessionKey
from handoff.kernel.upcasters import UPCASTERS as _PUBLISHED
from handoff.kernel.upcasters import Upcaster

# (type, schemaVersion it upgrades FROM) -> pure dict -> dict; one per schema change.
UPCASTERS: dict[tuple[str, int], Upcaster] = dict(_PUBLISHED)


def current_schema_version(event_type: str) -> int:
    """The schema version today's code writes for an event type."""
    return int(EVENT_TYPES[event_type].SCHEMA_VERSION)


class _Tail(msgspec.Struct, kw_only=True, gc=False, rename="camel", omit_defaults=True):
    """The wire fields that sort after ``hash``."""

    occurred_at: str
    prev_hash: str
    schema_version: int
    session_key: SessionKey
    type: str
    version: int
    idempotency_key: str | None = None


class _Fields(_Tail, kw_only=True):
    """Every envelope field but ``data`` and ``hash``."""

    actor: AgentId
    event_id: str


class _Unsigned(_Fields, kw_only=True):
    data: msgspec.Raw


class SignedRecord(_Unsigned, kw_only=True, forbid_unknown_fields=True):
    """A stored event record field by field, its payload as raw JSON: what export and import translate.

    Encoded with sorted keys, it is the record's canonical bytes, the ones its hash covers.
    """

    hash: str


class _Appended(_Fields, kw_only=True, forbid_unknown_fields=True):
    """The whole record of a ContextAppended event in one typed struct: most of any log is these."""

    data: ContextAppended
    hash: str


_canonical = msgspec.json.Encoder(order="sorted")
_decode_appended = msgspec.json.Decoder(_Appended)
_APPENDED_VERSION = ContextAppended.SCHEMA_VERSION


def _appended(record: bytes) -> _Appended | None:
    """The record as today's ContextAppended in one decode, or None if it is anything else."""
    try:
        rec = _decode_appended.decode(record)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return rec if rec.type == "ContextAppended" and rec.schema_version == _APPENDED_VERSION else None


_decode_signed = msgspec.json.Decoder(SignedRecord)
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls) for cls in EVENT_TYPES.values()
}


def encode_data(event: Event) -> bytes:
    """Canonical JSON of an event payload."""
    return _canonical.encode(event)


def _fields(env: Envelope, data: bytes) -> dict[str, Any]:
    return {
        "actor": env.actor,
        "data": msgspec.Raw(data),
        "event_id": env.event_id,
        "occurred_at": env.occurred_at,
        "prev_hash": env.prev_hash,
        "schema_version": env.schema_version,
        "session_key": env.session_key,
        "type": env.type,
        "version": env.version,
        "idempotency_key": env.idempotency_key,
    }


def compute_hash(env: Envelope, data: bytes | None = None) -> str:
    """SHA-256 over the canonical encoding of the envelope without ``hash``, including ``prevHash``."""
    raw = encode_data(env.event) if data is None else data
    return hashlib.sha256(_canonical.encode(_Unsigned(**_fields(env, raw)))).hexdigest()


def seal(env: Envelope) -> Envelope:
    """The envelope with its ``hash`` filled in."""
    return seal_and_encode(env)[0]


class _Head(msgspec.Struct, kw_only=True, gc=False, rename="camel"):
    """The wire fields that sort before ``hash``; the event is encoded in place, as `encode_data` would."""

    actor: str
    data: Any
    event_id: str


def seal_and_encode(env: Envelope) -> tuple[Envelope, bytes]:
    """The sealed envelope and its wire bytes, encoding the payload once."""
    digest, record = sealed_record(
        env.event, env.event_id, env.session_key, env.version, env.occurred_at, env.actor, env.prev_hash,
        env.idempotency_key, env.schema_version,
    )  # fmt: skip
    return msgspec.structs.replace(env, hash=digest), record


def sealed_record(
    event: Event,
    event_id: str,
    session_key: SessionKey,
    version: int,
    occurred_at: str,
    actor: AgentId,
    prev_hash: str,
    idempotency_key: str | None,
    schema_version: int,
) -> tuple[str, bytes]:
    """The ``hash`` of an envelope with these fields, and its canonical wire bytes.

    Sorted order puts ``hash`` between ``eventId`` and the rest, so the fields before it and the
    fields after it are encoded as two objects: the unsigned form is the two joined by a comma,
    the record is the same with ``"hash":..`` spliced in at the join. No byte is encoded twice.
    """
    head = _canonical.encode(_Head(actor=actor, data=event, event_id=event_id))[:-1]
    tail = _canonical.encode(
        _Tail(
            occurred_at=occurred_at,
            prev_hash=prev_hash,
            schema_version=schema_version,
            session_key=session_key,
            type=type(event).__name__,
            version=version,
            idempotency_key=idempotency_key,
        )
    )[1:]
    sha = hashlib.sha256(head)
    sha.update(b",")
    sha.update(tail)
    digest = sha.hexdigest()
    return digest, b'%s,"hash":"%s",%s' % (head, digest.encode(), tail)


def encode_envelope(env: Envelope) -> bytes:
    """The canonical wire bytes of a sealed envelope."""
    return _canonical.encode(SignedRecord(**_fields(env, encode_data(env.event)), hash=env.hash))


def upcast(event_type: str, schema_version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Bring an old payload up to today's schema, one version at a time."""
    target = current_schema_version(event_type)
    if schema_version > target:
        raise CodecError(f"{event_type} schemaVersion {schema_version} is newer than this package knows ({target})")
    while schema_version < target:
        step = UPCASTERS.get((event_type, schema_version))
        if step is None:
            raise CodecError(f"no upcaster for {event_type} schemaVersion {schema_version}")
        data = step(data)
        schema_version += 1
    return data


def _decode_payload(event_type: str, schema_version: int, raw: bytes) -> Event:
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise CodecError(f"unknown event type {event_type!r}")
    if schema_version == cls.SCHEMA_VERSION:
        return _decoders[cls].decode(raw)  # type: ignore[no-any-return]
    data = upcast(event_type, schema_version, msgspec.json.decode(raw))
    return msgspec.convert(data, cls)  # type: ignore[no-any-return]


def _envelope(head: SignedRecord | _Appended, event: Event) -> Envelope:
    return Envelope(
        event_id=head.event_id,
        session_key=head.session_key,
        version=head.version,
        occurred_at=head.occurred_at,
        actor=head.actor,
        prev_hash=head.prev_hash,
        hash=head.hash,
        event=event,
        idempotency_key=head.idempotency_key,
        schema_version=head.schema_version,
    )


def _decoded(record: bytes) -> tuple[SignedRecord | _Appended, Event]:
    """The record's envelope fields and its event, upcast; raises CodecError."""
    appended = _appended(record)
    if appended is not None:
        return appended, appended.data
    try:
        signed = _decode_signed.decode(record)
        return signed, _decode_payload(signed.type, signed.schema_version, bytes(signed.data))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"undecodable event record: {exc}") from exc


def decode_envelope(record: bytes) -> Envelope:
    """Decode wire bytes into an envelope, upcasting old payloads; raises CodecError."""
    return _envelope(*_decoded(record))


_decode_generic = msgspec.json.Decoder(dict[str, Any])


def check_record(record: bytes) -> str | None:
    """Why a stored record is not genuine (not canonical, or its hash does not match), or None."""
    return verify_record(record)[1]


def _genuine(record: bytes) -> Envelope | None:
    """The envelope of a record that is genuine by the quick test, or None to take the thorough one.

    The quick test decodes the record as `decode_envelope` does and seals what it decoded again: a
    genuine record is byte for byte that sealed record (canonical form and hash at once). A record
    it accepts, the thorough test accepts too; anything else (old schema versions, which seal as
    today's, explicit nulls, damage) goes to the thorough test, which says exactly what is wrong.
    """
    try:
        head, event = _decoded(record)
    except CodecError:
        return None
    digest, resealed = sealed_record(
        event, head.event_id, head.session_key, head.version, head.occurred_at, head.actor, head.prev_hash,
        head.idempotency_key, head.schema_version,
    )  # fmt: skip
    if digest != head.hash or resealed != record:
        return None
    return _envelope(head, event)


def verify_record(record: bytes) -> tuple[Envelope | None, str | None]:
    """The decoded envelope of a genuine record, or None and why it is not genuine.

    Genuine means: it decodes, it is byte for byte its own canonical encoding (so no byte anywhere
    was altered without breaking this), and its ``hash`` is the SHA-256 of the rest.
    """
    env = _genuine(record)
    if env is not None:
        return env, None
    try:
        body = _decode_generic.decode(record)
    except msgspec.DecodeError as exc:
        return None, f"undecodable: {exc}"
    if _canonical.encode(body) != record:
        return None, "record is not in canonical form (bytes were altered)"
    recorded = body.pop("hash", None)
    digest = hashlib.sha256(_canonical.encode(body)).hexdigest()
    if digest != recorded:
        return None, f"hash mismatch: recorded {str(recorded)[:12]}…, computed {digest[:12]}…"
    try:
        return decode_envelope(record), None
    except CodecError as exc:
        return None, str(exc)
