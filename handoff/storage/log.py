r"""The embedded event log: per-session streams, a global order, decision state and receipts in RocksDB.

E:<sessionKey>\\0<version:012d>     the event, canonical wire bytes (the truth)
G:<position:016d>                  <sessionKey>\\0<version>: the global order events were committed in
T:<sessionKey>                     SessionState (derived; rebuilt by folding E:)
K:<sessionKey>\\0<idempotencyKey>   Receipt of the first write with that key
M:position                         the last global position
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec
import pybase64

from handoff.kernel.codec import decode_envelope
from handoff.kernel.erasure import opened_entry
from handoff.kernel.errors import CodecError
from handoff.kernel.events import Envelope
from handoff.kernel.receipt import Receipt
from handoff.kernel.state import SessionState
from handoff.storage.datakeys import DataKeys
from handoff.storage.kv import KeyValue, Write

SEP = b"\x00"
POSITION_KEY = b"M:position"

_enc = msgspec.msgpack.Encoder()
_dec_state = msgspec.msgpack.Decoder(SessionState)
_dec_receipt = msgspec.msgpack.Decoder(Receipt)


class _SealedFields(msgspec.Struct):
    encrypted: msgspec.Raw = msgspec.Raw(b"")  # its JSON text, base64 decoded by pybase64 (msgspec's own is ~5× slower)


class _SealedRecord(msgspec.Struct):
    """The one field of a record that an entry's content is read from (the decoder skips the rest)."""

    data: _SealedFields


_dec_sealed = msgspec.json.Decoder(_SealedRecord)


def event_records(items: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[str, int, bytes]]:
    """(sessionKey, version, bytes) of stored events, from their (key, value) entries in the store."""
    for k, value in items:
        key, _, version = k[2:].rpartition(SEP)
        yield key.decode(), int(version), value


def event_prefix(key: str) -> bytes:
    """Prefix of a session's stream."""
    return b"E:" + key.encode() + SEP


def _pointer(key: str, version: int) -> bytes:
    """``<sessionKey> NUL <version:012d>``: an event's key without its ``E:``, and its global-order value."""
    return b"%s\x00%012d" % (key.encode(), version)


def event_key(key: str, version: int) -> bytes:
    """Key of one event."""
    return b"E:" + _pointer(key, version)


def position_key(position: int) -> bytes:
    """Key of one global position."""
    return b"G:%016d" % position


def add_event_writes(writes: list[Write], position: int, key: str, version: int, record: bytes) -> None:
    """Append the writes of one event: its record under its key, and its global-order entry (one pointer for both)."""
    pointer = _pointer(key, version)
    writes.append((b"E:" + pointer, record))
    writes.append((position_key(position), pointer))


def state_key(key: str) -> bytes:
    """Key of a session's decision state."""
    return b"T:" + key.encode()


def receipt_key(key: str, idempotency_key: str) -> bytes:
    """Key of an idempotency receipt."""
    return b"K:" + key.encode() + SEP + idempotency_key.encode()


def encode_state(state: SessionState) -> bytes:
    """Stored form of a decision state."""
    return _enc.encode(state)


def encode_receipt(receipt: Receipt) -> bytes:
    """Stored form of a receipt."""
    return _enc.encode(receipt)


class EventLog:
    """Reads of the embedded log (writes go through the engine's WriteBatch)."""

    def __init__(self, kv: KeyValue) -> None:
        self.keys = DataKeys(kv)  # the sessions' data keys, to show their events in the clear
        self.kv = kv

    def state(self, key: str) -> SessionState | None:
        """The stored decision state of a session."""
        raw = self.kv.get(state_key(key))
        return None if raw is None else _dec_state.decode(raw)

    def receipt(self, key: str, idempotency_key: str) -> Receipt | None:
        """The receipt stored under an idempotency key."""
        raw = self.kv.get(receipt_key(key, idempotency_key))
        return None if raw is None else _dec_receipt.decode(raw)

    def position(self) -> int:
        """The last committed global position (0 for an empty log)."""
        raw = self.kv.get(POSITION_KEY)
        return 0 if raw is None else int(raw)

    def record(self, key: str, version: int) -> bytes | None:
        """The stored bytes of one event."""
        return self.kv.get(event_key(key, version))

    def entries_fields(self, key: str, versions: list[int]) -> list[tuple[str, dict[str, object]] | None]:
        """The content and metadata of the session's ContextAppended events at `versions` (one read for all).

        For entry views that hold neither (`projections.viewstore`): the log holds them once, encrypted.
        Each is None once the session's key is destroyed (erased). CodecError if an event is not in this
        store or holds no ciphertext.
        """
        cipher = self.keys.cipher(key)
        fields: list[tuple[str, dict[str, object]] | None] = []
        for version, record in zip(versions, self.kv.get_many([event_key(key, v) for v in versions]), strict=True):
            if record is None:
                raise CodecError(f"session {key!r}: event {version} is not in this store, and its entry's content is")
            text = _dec_sealed.decode(record).data.encrypted
            if len(text) <= 2:  # absent (b""), null or an empty string
                raise CodecError(f"session {key!r}: event {version} holds no encrypted content")
            fields.append(None if cipher is None else opened_entry(pybase64.b64decode(memoryview(text)[1:-1]), cipher))
        return fields

    def records(self, key: str, until: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(version, bytes) of a session's events in order, up to `until` inclusive."""
        prefix = event_prefix(key)
        for k, value in self.kv.scan(prefix):
            version = int(k[len(prefix) :])
            if until is not None and version > until:
                return
            yield version, value

    def stream(self, key: str, until: int | None = None) -> Iterator[Envelope]:
        """A session's decoded events in order, up to `until` inclusive, shown in the clear while its key lives."""
        for _, value in self.records(key, until):
            yield self.keys.reveal(decode_envelope(value))

    def global_records(self, after: int = 0) -> Iterator[tuple[int, str, int, bytes]]:
        """(position, sessionKey, version, bytes) in commit order, after a position."""
        for k, pointer in self.kv.scan(b"G:", position_key(after) if after else None):
            key, version = pointer.split(SEP)
            record = self.kv.get(event_prefix(key.decode()) + version)
            if record is not None:
                yield int(k[2:]), key.decode(), int(version), record

    def all_records(self, session: str | None = None) -> Iterator[tuple[str, int, bytes]]:
        """(sessionKey, version, bytes) of every stored event, session by session, versions ascending.

        The version is the one in the key the record is stored under, not the one inside it.
        """
        prefix = event_prefix(session) if session is not None else b"E:"
        yield from event_records(self.kv.scan(prefix))

    def all_values(self) -> Iterator[bytes]:
        """The bytes of every stored event in the order of `all_records`, without reading their keys."""
        return self.kv.values(b"E:")

    def count(self) -> int:
        """The number of events in the global order (the log's length)."""
        return self.position()

    def session_keys(self) -> Iterator[str]:
        """Every session that has a decision state."""
        for k, _ in self.kv.scan(b"T:"):
            yield k[2:].decode()
