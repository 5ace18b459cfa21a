"""Compare and digest the views of two stores; name the first difference precisely."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec

from handoff.storage.digest import combine, entry_hash, view_items
from handoff.storage.keys import VIEW_PREFIXES
from handoff.storage.kv import KeyValue

Alike = Callable[[bytes, bytes, bytes], bool]  # (key, live, fresh): two unequal values that say the same
_KIND = {b"C:": "context entry", b"H:": "handoff view", b"I:": "index entry", b"S:": "session view", b"Y:": "summary"}


@dataclass(frozen=True)
class ViewDifference:
    """Where a live store's views differ from a fresh fold of the log."""

    session: str | None
    version: int | None
    what: str


def describe_key(key: bytes) -> tuple[str, str | None]:
    """The kind of view a key holds and the session (or handoff) it belongs to."""
    kind = _KIND.get(key[:2], "unknown key")
    body = key[2:]
    if key[:2] == b"C:":
        session, _, seq = body.partition(b"\x00")
        return f"{kind} {int(seq)}", session.decode(errors="replace")
    if key[:2] == b"I:":
        return f"{kind} {body!r}", None
    return kind, body.decode(errors="replace")


def _decoded(value: bytes | None) -> dict[str, object]:
    if value is None:
        return {}
    try:
        decoded = msgspec.msgpack.decode(value)
    except msgspec.DecodeError:
        return {"<undecodable>": value.hex()[:40]}
    return decoded if isinstance(decoded, dict) else {"value": decoded}


def _explain(key: bytes, live: bytes | None, fresh: bytes | None) -> ViewDifference:
    kind, owner = describe_key(key)
    if live is None:
        return ViewDifference(owner, None, f"{kind} is missing from the live store")
    if fresh is None:
        return ViewDifference(owner, None, f"{kind} exists in the live store but not in a fresh fold of the log")
    a, b = _decoded(live), _decoded(fresh)
    fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    stored = b.get("version")
    version = stored if isinstance(stored, int) else None
    shown = ", ".join(f"{f}: live={a.get(f)!r} fresh={b.get(f)!r}" for f in fields[:3])
    session = owner if key[:2] != b"H:" else str(b.get("sessionKey", owner))
    return ViewDifference(session, version, f"{kind} differs from a fresh fold of the log ({shown})")


@dataclass(frozen=True)
class Comparison:
    """The first difference between two stores' views (or None), and the digest of each."""

    difference: ViewDifference | None
    live_digest: str
    fresh_digest: str


class ViewMerge:
    """Merge-compares live view entries, pulled in key order, with fresh ones pushed in key order.

    It keeps the first difference and both digests; an entry both sides hold alike is hashed once.
    The fresh side may be pushed straight from a fold as it writes (no store in between), as long
    as it comes in ascending key order: `ordered` says whether it did (if not, the result is void).
    """

    def __init__(self, live: Iterator[tuple[bytes, bytes]], alike: Alike | None = None) -> None:
        self._live = live
        self._alike = alike  # unequal bytes it accepts (an older form of a view)
        self._next = next(live, None)
        self._last: bytes | None = None
        self.ordered = True
        self.live_sum = self.fresh_sum = 0
        self.difference: ViewDifference | None = None

    def push(self, key: bytes, value: bytes) -> None:
        """The next fresh entry."""
        if self._last is not None and key <= self._last:
            self.ordered = False
        self._last = key
        a = self._next
        while a is not None and a[0] < key:
            self._only_live(a)
            a = next(self._live, None)
        if a is not None and a[0] == key:
            if a[1] == value:
                h = entry_hash(key, value)
                self.live_sum += h
                self.fresh_sum += h
            else:
                if self._alike is None or not self._alike(key, a[1], value):
                    self.difference = self.difference or _explain(key, a[1], value)
                self.live_sum += entry_hash(*a)
                self.fresh_sum += entry_hash(key, value)
            a = next(self._live, None)
        else:
            self.difference = self.difference or _explain(key, None, value)
            self.fresh_sum += entry_hash(key, value)
        self._next = a

    def _only_live(self, item: tuple[bytes, bytes]) -> None:
        self.difference = self.difference or _explain(item[0], item[1], None)
        self.live_sum += entry_hash(*item)

    @classmethod
    def finished(cls, difference: ViewDifference | None, live_sum: int, fresh_sum: int) -> ViewMerge:
        """A finished merge made elsewhere (another process), from its outcome, to join in a `result`."""
        merge = cls(iter(()))
        merge.difference, merge.live_sum, merge.fresh_sum = difference, live_sum, fresh_sum
        return merge

    def finish(self) -> ViewMerge:
        """Count the live entries no fresh one came for."""
        while self._next is not None:
            self._only_live(self._next)
            self._next = next(self._live, None)
        return self

    def result(self, *others: ViewMerge) -> Comparison:
        """This merge's outcome, joined with merges of further key ranges that sort after this one's."""
        difference = next((m.difference for m in (self, *others) if m.difference is not None), None)
        live = combine([m.live_sum for m in (self, *others)])
        fresh = combine([m.fresh_sum for m in (self, *others)])
        return Comparison(difference, live, fresh)


def merged(
    live: KeyValue, fresh: KeyValue, prefixes: tuple[bytes, ...] = VIEW_PREFIXES, alike: Alike | None = None
) -> ViewMerge:
    """The finished merge-compare of two stores' views, in one pass over each."""
    merge = ViewMerge(view_items(live, prefixes), alike)
    for key, value in view_items(fresh, prefixes):
        merge.push(key, value)
    return merge.finish()
