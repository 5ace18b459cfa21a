"""Compare and digest the views of two stores; name the first difference precisely."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from projections.store import KeyValue

VIEW_PREFIXES: tuple[bytes, ...] = (b"C:", b"H:", b"I:", b"S:", b"Y:")
_KIND = {b"C:": "context entry", b"H:": "handoff view", b"I:": "index entry", b"S:": "session view", b"Y:": "summary"}


def view_items(kv: KeyValue, prefixes: tuple[bytes, ...] = VIEW_PREFIXES) -> Iterator[tuple[bytes, bytes]]:
    """Every view entry, in key order."""
    for prefix in prefixes:
        yield from kv.scan(prefix)


def entry_hash(key: bytes, value: bytes) -> int:
    """SHA-256 of one length-prefixed view entry, as an integer."""
    h = hashlib.sha256(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
    return int.from_bytes(h.digest(), "big")


def combine(partials: list[int]) -> str:
    """The digest of a store whose entries are spread over several partial sums (e.g. Kafka partitions)."""
    return "%064x" % (sum(partials) % (1 << 256))


def digest_sum(kv: KeyValue, prefixes: tuple[bytes, ...] = VIEW_PREFIXES) -> int:
    """The partial digest of one store: the sum of its entries' hashes modulo 2**256."""
    total = 0
    for key, value in view_items(kv, prefixes):
        total += entry_hash(key, value)
    return total % (1 << 256)


def digest(kv: KeyValue, prefixes: tuple[bytes, ...] = VIEW_PREFIXES) -> str:
    """A digest of every view entry that does not depend on how the entries are spread or ordered.

    It is the sum, modulo 2**256, of the SHA-256 of each length-prefixed (key, value) entry: equal
    stores have equal digests, and the digests of disjoint stores (one per Kafka partition) add up.
    """
    return combine([digest_sum(kv, prefixes)])


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


def compare(live: KeyValue, fresh: KeyValue, prefixes: tuple[bytes, ...] = VIEW_PREFIXES) -> Comparison:
    """Merge-compare the two stores' views and digest both, in one pass over each.

    An entry present in both with the same bytes is hashed once and counted in both digests.
    """
    left, right = view_items(live, prefixes), view_items(fresh, prefixes)
    live_sum = fresh_sum = 0
    difference: ViewDifference | None = None
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            difference = difference or _explain(a[0], a[1], None)
            live_sum += entry_hash(*a)
            a = next(left, None)
        elif a is None or b[0] < a[0]:
            difference = difference or _explain(b[0], None, b[1])
            fresh_sum += entry_hash(*b)
            b = next(right, None)
        else:
            if a[1] == b[1]:
                h = entry_hash(*a)
                live_sum += h
                fresh_sum += h
            else:
                difference = difference or _explain(a[0], a[1], b[1])
                live_sum += entry_hash(*a)
                fresh_sum += entry_hash(*b)
            a, b = next(left, None), next(right, None)
    return Comparison(difference, combine([live_sum % (1 << 256)]), combine([fresh_sum % (1 << 256)]))


def first_difference(
    live: KeyValue, fresh: KeyValue, prefixes: tuple[bytes, ...] = VIEW_PREFIXES
) -> ViewDifference | None:
    """Merge-compare the two stores' views; the first key whose entry differs, or None."""
    return compare(live, fresh, prefixes).difference
