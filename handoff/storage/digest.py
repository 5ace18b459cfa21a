"""A digest of a store's views that does not depend on how their entries are spread over stores or ordered."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from handoff.storage.keys import VIEW_PREFIXES
from handoff.storage.kv import KeyValue

# A selector that ends in this byte names one key exactly instead of a prefix: keys are UTF-8, where 0xFF
# never occurs, so the two cannot be confused, and the marker survives the trip to a worker as plain bytes.
EXACT = b"\xff"


def exact(key: bytes) -> bytes:
    """A selector for `view_items` that matches `key` alone (a prefix would also match longer keys)."""
    return key + EXACT


def view_items(kv: KeyValue, prefixes: tuple[bytes, ...] = VIEW_PREFIXES) -> Iterator[tuple[bytes, bytes]]:
    """Every view entry under the selectors (prefixes, or `exact` keys), in key order."""
    for prefix in prefixes:
        if prefix.endswith(EXACT):
            value = kv.get(prefix[: -len(EXACT)])
            if value is not None:
                yield prefix[: -len(EXACT)], value
        else:
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
