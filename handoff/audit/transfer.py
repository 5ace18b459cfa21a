"""`handoff export` / `handoff import`: the log as CloudEvents 1.0 JSON lines, and back.

One event per line, structured mode::

    {"specversion":"1.0","id":<eventId>,"source":"handoff://sessions/<sessionKey>","type":<event type>,
     "time":<occurredAt>,"subject":<sessionKey>,"datacontenttype":"application/json","data":{...},
     "handoffversion":7,"handoffschemaversion":1,"handoffactor":"alice","handoffprevhash":"…",
     "handoffhash":"…","handoffidempotencykey":"…"}

The envelope fields that CloudEvents has no attribute for travel as extension attributes (lowercase,
at most 20 characters, as the spec requires). After the events, one line of type ``handoff.datakey``
per session that still has its data key (CONTRACT §8), so an imported store reads what the source
read; an erased session has none, so an export carries it in the erased form (keep exports as
secret as the store itself). Import rebuilds each canonical record and refuses the
whole file if any session's hash chain is broken, so a store is never half-imported.
"""

from __future__ import annotations

import base64
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import msgspec

from handoff.audit.progress import Progress
from handoff.kernel.codec import SignedRecord, check_record, decode_envelope
from handoff.kernel.errors import InvalidArgument
from handoff.kernel.events import GENESIS_HASH, Envelope
from handoff.kernel.receipt import receipt_of
from handoff.kernel.state import SessionState, evolve
from handoff.kernel.text import agent_name_problem
from handoff.kernel.types import AgentId, SessionKey
from handoff.storage import log as L
from handoff.storage.datakeys import KEY_BYTES, data_key
from handoff.storage.datakeys import PREFIX as DATA_KEY_PREFIX
from handoff.storage.kv import KeyValue, Write
from projections.replay import fold_events

_canonical = msgspec.json.Encoder(order="sorted")


class CloudEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One exported event."""

    specversion: str
    id: str
    source: str
    type: str
    time: str
    subject: SessionKey
    data: msgspec.Raw
    datacontenttype: str = "application/json"
    handoffversion: int
    handoffschemaversion: int
    handoffactor: AgentId
    handoffprevhash: str
    handoffhash: str
    handoffidempotencykey: str | None = None


class DataKeyLine(msgspec.Struct, kw_only=True):
    """One session's data key in an export (absent for erased sessions and those from before erasure existed)."""

    specversion: str
    type: str
    id: str
    source: str
    subject: SessionKey
    data: dict[str, str]


DATA_KEY_TYPE = "handoff.datakey"
_decode_line = msgspec.json.Decoder(CloudEvent)
_decode_key_line = msgspec.json.Decoder(DataKeyLine)


def data_key_line(session: str, key: bytes) -> bytes:
    """The export line that carries a session's data key."""
    line = DataKeyLine(
        specversion="1.0",
        type=DATA_KEY_TYPE,
        id=f"datakey:{session}",
        source=f"handoff://sessions/{session}",
        subject=SessionKey(session),
        data={"key": base64.b64encode(key).decode("ascii")},
    )
    return msgspec.json.encode(line)


def data_key_of(line: bytes) -> tuple[str, bytes] | None:
    """(session, key) if the line is a data key line, else None; InvalidArgument if it is a damaged one."""
    if b'"handoff.datakey"' not in line:
        return None
    try:
        parsed = _decode_key_line.decode(line)
        key = base64.b64decode(parsed.data["key"], validate=True)
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, ValueError) as exc:
        raise InvalidArgument(f"not a handoff data key line: {exc}") from exc
    if parsed.type != DATA_KEY_TYPE or len(key) != KEY_BYTES or not _KEY.fullmatch(parsed.subject):
        raise InvalidArgument("not a handoff data key line (wrong type, key length or session key)")
    return parsed.subject, key


_decode_signed = msgspec.json.Decoder(SignedRecord)


def to_cloudevent(record: bytes) -> bytes:
    """A stored event record as one CloudEvents JSON line (without the newline)."""
    s = _decode_signed.decode(record)
    return msgspec.json.encode(
        CloudEvent(
            specversion="1.0",
            id=s.event_id,
            source=f"handoff://sessions/{s.session_key}",
            type=s.type,
            time=s.occurred_at,
            subject=s.session_key,
            data=s.data,
            handoffversion=s.version,
            handoffschemaversion=s.schema_version,
            handoffactor=s.actor,
            handoffprevhash=s.prev_hash,
            handoffhash=s.hash,
            handoffidempotencykey=s.idempotency_key,
        )
    )


def from_cloudevent(line: bytes) -> bytes:
    """The canonical stored record of one CloudEvents line; raises InvalidArgument if it is not one."""
    try:
        ce = _decode_line.decode(line)
        data = _canonical.encode(msgspec.json.decode(bytes(ce.data)))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidArgument(f"not a handoff CloudEvent: {exc}") from exc
    if ce.specversion != "1.0":
        raise InvalidArgument(f"specversion {ce.specversion!r} is not 1.0")
    signed = SignedRecord(
        actor=ce.handoffactor,
        data=msgspec.Raw(data),
        event_id=ce.id,
        occurred_at=ce.time,
        prev_hash=ce.handoffprevhash,
        schema_version=ce.handoffschemaversion,
        session_key=ce.subject,
        type=ce.type,
        version=ce.handoffversion,
        idempotency_key=ce.handoffidempotencykey,
        hash=ce.handoffhash,
    )
    return _canonical.encode(signed)


def export_lines(kv: KeyValue, session: str | None = None, quiet: bool = True) -> Iterator[bytes]:
    """Every event of the store (or of one session) as CloudEvents lines, in commit order."""
    log = L.EventLog(kv)
    progress = Progress("export", total=None if session else log.count(), quiet=quiet)
    if session is not None:
        for _, _, record in log.all_records(session):
            progress.advance()
            yield to_cloudevent(record)
    else:
        for _, _, _, record in log.global_records():
            progress.advance()
            yield to_cloudevent(record)
    for key, value in kv.scan(DATA_KEY_PREFIX + (b"" if session is None else session.encode())):
        owner = key[len(DATA_KEY_PREFIX) :].decode()
        if session is None or owner == session:
            yield data_key_line(owner, value)
    progress.done()


_KEY = re.compile(r"[A-Za-z0-9._:-]{1,255}")
_AGENT_FIELDS = ("agent_from", "agent", "source_agent", "target_agent")


def name_problem(env: Envelope) -> str | None:
    """What breaks the tools' key and name rules in an imported event, or None.

    A hash chain proves only that the lines belong together, not that their keys are keys: a session key
    with a NUL would read as a prefix of another session's keys in the store.
    """
    if _KEY.fullmatch(env.session_key) is None:
        return f"session key {env.session_key!r} is not 1-255 characters of A-Za-z0-9._:-"
    handoff_id = getattr(env.event, "handoff_id", None)
    if handoff_id is not None and _KEY.fullmatch(handoff_id) is None:
        return f"handoff id {handoff_id!r} is not 1-255 characters of A-Za-z0-9._:-"
    for field, value in [("actor", env.actor)] + [(f, getattr(env.event, f, None)) for f in _AGENT_FIELDS]:
        if value is None:
            continue
        why = "is empty" if not value else "is over 100 characters" if len(value) > 100 else agent_name_problem(value)
        if why is not None:
            return f"{field} {value!r}: {why}"
    return None


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote (`already`: events a previous, interrupted import had written)."""

    events: int
    sessions: int
    seconds: float
    already: int = 0


def _read_checked(
    lines: Iterable[bytes], progress: Progress, keys: dict[str, bytes] | None = None
) -> Iterator[tuple[int, bytes]]:
    """(line number, canonical record) of every event line, data keys into `keys`; InvalidArgument on a bad line."""
    chains: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            found = data_key_of(line)
            if found is not None:
                if keys is not None:
                    keys[found[0]] = found[1]
                continue
            record = from_cloudevent(line)
        except InvalidArgument as exc:
            raise InvalidArgument(f"line {number}: {exc.message}") from exc
        why = check_record(record)
        env = decode_envelope(record) if why is None else None
        if env is None:
            raise InvalidArgument(f"line {number}: {why}")
        problem = name_problem(env)
        if problem is not None:
            raise InvalidArgument(f"line {number}: {problem}")
        version, prev = chains.get(env.session_key, (0, GENESIS_HASH))
        if env.version != version + 1 or env.prev_hash != prev:
            raise InvalidArgument(
                f"line {number}: session {env.session_key!r} version {env.version} does not follow version "
                f"{version} of its hash chain"
            )
        chains[env.session_key] = (env.version, env.hash)
        progress.advance()
        yield number, record


def checked_records(stream: IO[bytes], quiet: bool = True, keys: dict[str, bytes] | None = None) -> Iterator[bytes]:
    """The canonical record of every line, yielded only after EVERY line passed the hash-chain check.

    The first bad line raises InvalidArgument before anything is yielded. The stream is read twice;
    one that cannot seek (a pipe) is spooled to a temporary file first.
    """
    if not stream.seekable():
        spool = tempfile.TemporaryFile()
        shutil.copyfileobj(stream, spool)
        stream = spool
    stream.seek(0)
    checking = Progress("import: checking", quiet=quiet)
    for _ in _read_checked(stream, checking):
        pass
    checking.done()
    stream.seek(0)
    writing = Progress("import: writing", total=checking.count, quiet=quiet)
    for _, record in _read_checked(stream, writing, keys):
        yield record
    writing.done()


def import_lines(kv: KeyValue, stream: IO[bytes], quiet: bool = True) -> ImportResult:
    """Check every line first (nothing is written if any is bad), then write the log, state and views."""
    if next(kv.scan(b""), None) is not None:
        raise InvalidArgument("the target store is not empty; import into a fresh data dir")
    started = time.perf_counter()
    states: dict[str, SessionState] = {}
    writes: list[Write] = []
    position = 0
    keys: dict[str, bytes] = {}
    for record in checked_records(stream, quiet, keys):
        position += 1
        env = decode_envelope(record)
        state = evolve(states.get(env.session_key), env)
        states[env.session_key] = state
        L.add_event_writes(writes, position, env.session_key, env.version, record)
        if env.idempotency_key is not None:
            # The arguments' fingerprint is not in the log; an empty one accepts any retry with the key.
            receipt = receipt_of(state, env, "")
            writes.append((L.receipt_key(env.session_key, env.idempotency_key), L.encode_receipt(receipt)))
        if len(writes) >= 20_000:
            kv.write(writes)
            writes = []
    writes += [(L.state_key(k), L.encode_state(s)) for k, s in states.items()]
    writes.append((L.POSITION_KEY, b"%d" % position))
    writes += [(data_key(k), key) for k, key in keys.items() if k in states]
    kv.write(writes)
    shown = L.EventLog(kv).keys.reveal
    fold_events(kv, (shown(decode_envelope(r)) for r in L.EventLog(kv).all_values()))
    return ImportResult(position, len(states), time.perf_counter() - started)
