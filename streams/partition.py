"""One partition's local store: the embedded engine's layout in RocksDB, kept as a cache of ``handoff.events``.

A worker that owns partition p keeps, in ``<data-dir>/p<p>``, exactly what the embedded engine keeps
(events, decision state, idempotency receipts and every view) plus two things of its own:

    O:events            the offset of the last event of partition p folded into this store
    O:commands          the offset of the last command record of partition p decided into this store
                        (what a read-your-writes read waits for: the submitter knows its record's offset)
    O:keys              the offset of the last record of partition p of ``handoff.keys`` loaded into this store
    D:<commandId>       the reply a command got, so a command sent twice is decided once (without its
                        event, which the store holds once, under its session and version)

Data keys (CONTRACT §8 Erasure) live in the compacted ``handoff.keys`` topic, written in the transactions
that register and erase sessions; `load_keys` copies partition p's keys into the store (``P:<sessionKey>``,
as the embedded engine keeps them) before `catch_up` folds events, so the views show live sessions' content
in the clear and erased sessions in the erased form, on every owner after any failover.

The events topic is the truth: `catch_up` folds the events after ``O:events`` (with the same kernel
`evolve` and the same `project` as everywhere) before the partition decides anything, so a store
that is behind, lost, or deleted converges to the log. Decisions reuse the embedded engine's
`decide_batch` unchanged.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from handoff.engine.engine import Engine
from handoff.kernel.codec import decode_envelope, encode_envelope
from handoff.kernel.errors import CodecError
from handoff.kernel.events import Envelope, SessionErased
from handoff.kernel.receipt import receipt_of
from handoff.kernel.state import SessionState, evolve
from handoff.kernel.types import Limits
from handoff.storage import datakeys as DK
from handoff.storage import log as L
from handoff.storage.due import entry_write as due_entry_write
from handoff.storage.keys import context_prefix
from handoff.storage.kv import RocksKeyValue, Write
from projections.folds import erased_entry, erased_handoff
from projections.projector import Changes, OverlayReader, project
from projections.viewstore import StoreReader, changes_to_writes, decode_entry
from streams.records import Reply, decode_reply, encode_reply

log = logging.getLogger("handoff.worker")

OFFSET_KEY = b"O:events"
DECIDED_KEY = b"O:commands"
KEYS_KEY = b"O:keys"
HEADER_COMMAND_ID = "commandId"
HEADER_DIGEST = "digest"


def dedupe_key(command_id: str) -> bytes:
    """Key of the stored reply of a command."""
    return b"D:" + command_id.encode()


def dedupe_entry(reply: Reply) -> tuple[bytes, bytes]:
    """The store's entry for a decided command: its reply without the event (`stored_reply` puts it back).

    The event is the biggest part of a reply, and the store already holds it under its session and
    version: kept in the reply too, every command's content would be stored twice more, forever. The
    session's metadata is left out of its receipt too: it is erasable content (CONTRACT §8), and these
    entries are keyed by command, so an erasure could not find them.
    """
    receipt = reply.receipt
    if receipt is not None and receipt.session.metadata:  # erasable: `stored_reply` takes it from the session
        receipt = msgspec.structs.replace(receipt, session=msgspec.structs.replace(receipt.session, metadata={}))
    return dedupe_key(reply.command_id), encode_reply(msgspec.structs.replace(reply, event=_NO_EVENT, receipt=receipt))


# The reply's own default: encoding leaves the field out only for this very object (an equal empty Raw
# would be written as nothing, which is not JSON).
_NO_EVENT = next(f.default for f in msgspec.structs.fields(Reply) if f.name == "event")


@dataclass(frozen=True)
class EventRecord:
    """An event as read back from ``handoff.events``."""

    offset: int
    value: bytes
    headers: dict[str, str]


class PartitionStore:
    """The RocksDB store of one partition and the engine that decides on it."""

    def __init__(
        self,
        path: Path,
        partition: int,
        *,
        limits: Limits,
        clock: Callable[[], str],
        new_id: Callable[[], str],
    ) -> None:
        self.path = path
        self.partition = partition
        self._limits, self._clock, self._new_id = limits, clock, new_id
        self._open()

    def _open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.kv = RocksKeyValue(str(self.path))
        self.engine = self._new_engine()

    def _new_engine(self) -> Engine:
        # New sessions get a data key: the decider writes it to handoff.keys in the registering transaction.
        return Engine(self.kv, limits=self._limits, sync=False, clock=self._clock, new_id=self._new_id, encrypt=True)

    @property
    def limits(self) -> Limits:
        """The limits this partition decides with."""
        return self._limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        """Decide with `limits` from now on, in this engine and in any the store builds again later."""
        self._limits = limits
        self.engine.limits = limits

    @property
    def keys_loaded(self) -> int:
        """The offset of the last ``handoff.keys`` record loaded, -1 for none."""
        raw = self.kv.get(KEYS_KEY)
        return -1 if raw is None else int(raw)

    def load_keys(self, records: Iterable[tuple[int, bytes | None, bytes | None]]) -> int:
        """Keep the data keys of (offset, sessionKey, key or None for a tombstone) records; returns how many.

        A tombstone deletes the key here too. Its session's events are folded by `catch_up`, whose fold of
        ``SessionErased`` rewrites what the store showed of it and compacts the files.
        """
        writes: list[Write] = []
        last = self.keys_loaded
        for offset, session, key in records:
            if offset <= last or session is None:
                continue
            last = offset
            name = session.decode()
            if key is not None and len(key) != DK.KEY_BYTES:  # not written by a decider: its session stays hidden
                where = {"partition": self.partition, "offset": offset}
                log.warning("ignoring a malformed data key record", extra=where)
                continue
            writes.append(DK.destroy_write(name) if key is None else (DK.data_key(name), key))
        if last != self.keys_loaded:
            writes.append((KEYS_KEY, b"%d" % last))
            self.kv.write(writes)
            self.engine = self._new_engine()  # its key cache predates what was just loaded
        return len(writes) - (1 if writes else 0)

    def shown_record(self, record: bytes) -> bytes:
        """An event record with its erasable fields in the clear while its session has its key (for replies)."""
        env = decode_envelope(record)
        shown = self.engine.datakeys.reveal(env)
        return record if shown is env else encode_envelope(shown)

    @property
    def applied(self) -> int:
        """The offset of the last folded event, -1 for none."""
        raw = self.kv.get(OFFSET_KEY)
        return -1 if raw is None else int(raw)

    @property
    def decided(self) -> int:
        """The offset of the last command record decided into this store, -1 for none."""
        raw = self.kv.get(DECIDED_KEY)
        return -1 if raw is None else int(raw)

    def mark_decided(self, offset: int) -> None:
        """Every command record up to `offset` has its effects in this store (after catching up)."""
        self.kv.write([(DECIDED_KEY, b"%d" % offset)])

    def stored_reply(self, command_id: str) -> Reply | None:
        """The reply a command already got, if it was decided, with its event."""
        raw = self.kv.get(dedupe_key(command_id))
        if raw is None:
            return None
        reply = decode_reply(raw)
        if reply.ok and reply.receipt is not None:
            key = reply.receipt.session.session_key
            state = self.engine.state(key)
            if state is not None and state.metadata and not reply.receipt.session.metadata:
                session = msgspec.structs.replace(reply.receipt.session, metadata=dict(state.metadata))
                reply = msgspec.structs.replace(reply, receipt=msgspec.structs.replace(reply.receipt, session=session))
        if reply.ok and not reply.event and reply.receipt is not None:  # stores before stop 10 kept the event in it
            record = self.engine.log.record(reply.receipt.session.session_key, reply.receipt.version)
            if record is not None:
                reply = msgspec.structs.replace(reply, event=msgspec.Raw(self.shown_record(record)))
        return reply

    def holds(self, record: bytes) -> bool:
        """Whether this store folded exactly this event record (the same bytes at its session and version)."""
        try:
            env = decode_envelope(record)
        except CodecError:
            return False
        return self.kv.get(L.event_key(env.session_key, env.version)) == record

    def empty(self) -> None:
        """Delete everything this store holds, to catch up from the log's start (it is only a cache)."""
        self.kv.close()
        shutil.rmtree(self.path)
        self._open()

    def catch_up(self, records: Iterable[EventRecord]) -> int:
        """Fold events read from the log that this store has not applied yet; returns how many."""
        states: dict[str, SessionState] = {}
        changes = Changes()
        reader = OverlayReader(StoreReader(self.kv), changes)
        writes: list[Write] = []
        last = self.applied
        count = 0
        erased: list[str] = []
        for rec in records:
            if rec.offset <= last:
                continue
            env = decode_envelope(rec.value)
            key = env.session_key
            prior = states.get(key) or self.engine.log.state(key) or SessionState(session_key=key)
            last = rec.offset
            if env.version <= prior.version:
                continue  # already folded (a store written after its offset marker)
            if env.version != prior.version + 1:
                raise RuntimeError(f"gap in session {key!r}: version {env.version} after {prior.version}")
            state = evolve(prior, env)
            states[key] = state
            project(reader, self.engine.datakeys.reveal(env), changes)
            if isinstance(env.event, SessionErased):
                erased.append(key)
                self._erase_views(key, state, reader, changes, writes)
            self._fold_writes(state, env, rec, writes)
            count += 1
        if last != self.applied:
            writes.extend((L.state_key(k), L.encode_state(s)) for k, s in states.items())
            writes.extend(changes_to_writes(changes))
            writes.append((OFFSET_KEY, b"%d" % last))
            self.kv.write(writes)
            self.engine = self._new_engine()  # its caches predate what was just folded
            if erased:
                self.engine.purge_files()
        return count

    def _fold_writes(self, state: SessionState, env: Envelope, rec: EventRecord, writes: list[Write]) -> None:
        """The store entries a folded event adds besides its views: the event, due entry, receipt, reply."""
        key = env.session_key
        receipt = receipt_of(state, env, rec.headers.get(HEADER_DIGEST, ""))
        writes.append((L.event_key(key, env.version), rec.value))
        due = due_entry_write(state, env)  # a new owner's store knows what falls due, as the deciding one did
        if due is not None:
            writes.append(due)
        if env.idempotency_key is not None:
            writes.append((L.receipt_key(key, env.idempotency_key), L.encode_receipt(receipt)))
        command_id = rec.headers.get(HEADER_COMMAND_ID)
        if command_id:
            reply = Reply(
                command_id=command_id, ok=True, event=msgspec.Raw(rec.value), receipt=receipt,
                partition=self.partition, offset=rec.offset,
            )  # fmt: skip
            writes.append(dedupe_entry(reply))

    def _erase_views(
        self, key: str, state: SessionState, reader: OverlayReader, changes: Changes, writes: list[Write]
    ) -> None:
        """What the deciding engine's `_erase_views` did, for a SessionErased folded from the log.

        A store that showed the session before (it folded its events while it had the key) rewrites its
        entries and handoffs to the erased form, drops its receipts and its key.
        """
        for _, value in self.kv.scan(context_prefix(key)):
            entry = decode_entry(value)
            changes.entries.setdefault((key, entry.sequence_number), entry)
        for (k, seq), entry in list(changes.entries.items()):
            if k == key:
                changes.entries[(k, seq)] = erased_entry(entry)
        for hid in state.handoffs:
            view = reader.handoff(hid)
            if view is not None:
                changes.handoffs[hid] = erased_handoff(view)
        prefix = L.receipt_key(key, "")
        writes[:] = [w for w in writes if not w[0].startswith(prefix)]
        writes.extend((k, None) for k, _ in self.kv.scan(prefix))
        writes.append(DK.destroy_write(key))

    def close(self) -> None:
        """Release the RocksDB lock."""
        self.kv.close()
