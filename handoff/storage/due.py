r"""The due-index: which sessions have something falling due (expiry, a pending handoff's deadline), by time.

    X:<dueAt>\\0<sessionKey>      (empty value)

``dueAt`` is the clock's ISO 8601 text, which sorts as it compares, so a sweep is one range scan up to
now, never a scan of every session. An entry is a promise that nothing of the session falls due
before it, not an exact time: it is written when a session is registered (its expiry) and when a
handoff is requested (its deadline), in the same WriteBatch as the event, and by `seed` once for a
store written before the index existed. A later
write only moves expiry later, so the entry stays a true lower bound with no work on the hot path;
the sweep that reaches an early entry replaces it with the session's real next due time.
"""

from __future__ import annotations

from collections.abc import Iterator

from handoff.kernel.events import Envelope, HandoffRequested, SessionRegistered
from handoff.kernel.lifecycle import next_due
from handoff.kernel.state import SessionState
from handoff.storage.kv import KeyValue, Write
from handoff.storage.log import EventLog

PREFIX = b"X:"
SEP = b"\x00"
_INDEXED = frozenset({SessionRegistered, HandoffRequested})  # the events whose writes carry an entry
SEEDED_KEY = b"M:due-index"  # present once every session's entry is in (stores older than expiry lack it)


def due_key(at: str, session_key: str) -> bytes:
    """Key of one due-index entry."""
    return PREFIX + at.encode() + SEP + session_key.encode()


def entry_write(state: SessionState, env: Envelope) -> Write | None:
    """The due-index write an event needs (registrations and handoff requests only), or None."""
    if type(env.event) in _INDEXED:
        at = next_due(state)
        if at is not None:
            return due_key(at, env.session_key), b""
    return None


def seed(kv: KeyValue) -> int:
    """Give every session of a store written before the due-index existed its entry, once; returns how many."""
    if kv.get(SEEDED_KEY) is not None:
        return 0
    log = EventLog(kv)
    writes: list[Write] = []
    for key in log.session_keys():
        state = log.state(key)
        at = next_due(state) if state is not None else None
        if at is not None:
            writes.append((due_key(at, key), b""))
    writes.append((SEEDED_KEY, b"1"))
    kv.write(writes)
    return len(writes) - 1


def due_entries(kv: KeyValue, now: str, limit: int) -> Iterator[tuple[bytes, str, str]]:
    """(key, dueAt, sessionKey) of at most `limit` entries due at or before `now`, oldest first."""
    end = PREFIX + now.encode() + SEP + b"\xff"
    for n, (key, _) in enumerate(kv.scan(PREFIX)):
        if n >= limit or key > end:
            return
        at, _, session = key[len(PREFIX) :].partition(SEP)
        yield key, at.decode(), session.decode()
