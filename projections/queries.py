"""Queries: the read side, answered from views in a `KeyValue` (live, replayed, or folded as of a version).

Context entries whose content the log holds (`projections.viewstore`) get it from an `EventLog`: by
default the log in the same store; a store of views only (a replay, a fold as of a version) is read
with the log it was folded from.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from handoff.kernel.errors import InvalidArgument
from handoff.kernel.package import PackageEntry
from handoff.storage import keys
from handoff.storage.kv import KeyValue
from handoff.storage.log import EventLog
from projections.folds import erased_entry
from projections.views import ContextEntryView, HandoffView, SessionView
from projections.viewstore import StoreReader, decode_entry, reads_from_log

T = TypeVar("T")
V = TypeVar("V")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the cursor to the next (None at the end)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(index_entry: bytes) -> str:
    """An opaque cursor for a position in an index."""
    return base64.urlsafe_b64encode(index_entry).decode().rstrip("=")


def decode_cursor(cursor: str, prefix: bytes) -> bytes:
    """The index position a cursor names; raises InvalidArgument for a foreign or garbled cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError as exc:
        raise InvalidArgument("cursor is not one this server issued", field="cursor") from exc
    if not raw.startswith(prefix):
        raise InvalidArgument("cursor belongs to a different listing", field="cursor")
    return raw


class Queries:
    """Every read the MCP adapter and the workers answer."""

    def __init__(self, kv: KeyValue, log: EventLog | None = None) -> None:
        self.kv = kv
        self.reader = StoreReader(kv)
        self.log = log or EventLog(kv)

    def session(self, key: str) -> SessionView | None:
        """The session view."""
        return self.reader.session(key)

    def handoff(self, hid: str) -> HandoffView | None:
        """The handoff view."""
        return self.reader.handoff(hid)

    def context(self, key: str, after: int, limit: int) -> tuple[list[ContextEntryView], int | None]:
        """Entries with sequence > `after`, at most `limit`; and the cursor for more (None at the end)."""
        prefix = keys.context_prefix(key)
        start = keys.context_key(key, after) if after > 0 else None
        entries: list[ContextEntryView] = []
        for _, value in self.kv.scan(prefix, start):
            if len(entries) == limit:
                return self._whole(key, entries), entries[-1].sequence_number
            entries.append(decode_entry(value))
        return self._whole(key, entries), None

    def _whole(self, key: str, entries: list[ContextEntryView]) -> list[ContextEntryView]:
        """The entries with their content and metadata, read from the log (in one read) where views hold neither."""
        sealed = [i for i, entry in enumerate(entries) if reads_from_log(entry)]
        if not sealed:
            return entries
        fields = self.log.entries_fields(key, [entries[i].version for i in sealed])
        for i, found in zip(sealed, fields, strict=True):
            if found is None:  # the key went after the views were read: erased
                entries[i] = erased_entry(entries[i])
            else:
                entries[i] = msgspec.structs.replace(entries[i], content=found[0], metadata=found[1])
        return entries

    def entries_newest_first(self, key: str, last: int, page: int = 8, max_page: int = 64) -> Iterator[PackageEntry]:
        """The session's entries from `last` down to 1, read a page at a time as the caller pulls.

        Pages start at `page` and double up to `max_page`: a package of 1 KiB entries holds ~7 of
        them, so a first page of 64 decoded ~57 entries for nothing.
        """
        hi = last
        while hi >= 1:
            lo = max(1, hi - page + 1)
            entries, _ = self.context(key, lo - 1, hi - lo + 1)
            for entry in reversed(entries):
                yield to_package_entry(entry)
            hi, page = lo - 1, min(page * 2, max_page)

    def package_entries(self, view: HandoffView) -> list[PackageEntry]:
        """The entries a handoff's package holds, re-read by its recorded range."""
        rec = view.package
        if rec.from_sequence is None or rec.to_sequence is None:
            return []
        entries, _ = self.context(view.session_key, rec.from_sequence - 1, rec.to_sequence - rec.from_sequence + 1)
        return [to_package_entry(e) for e in entries]

    def _page(
        self, prefix: bytes, limit: int, cursor: str | None, load: Callable[[str], V | None], keep: Callable[[V], bool]
    ) -> Page[V]:
        """Views from one index slice, newest first, that `keep` accepts; and the cursor to the next page."""
        after = decode_cursor(cursor, prefix) if cursor else None
        found: list[V] = []
        last = b""
        for key, value in self.kv.scan(prefix, after):
            view = load(value.decode())
            if view is None or not keep(view):
                continue
            if len(found) == limit:
                return Page(found, encode_cursor(last))
            found.append(view)
            last = key
        return Page(found, None)

    def list_sessions(
        self, agent: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[SessionView]:
        """Sessions newest first, optionally of one participant and/or status."""
        prefix = keys.session_listing(agent, status)
        return self._page(prefix, limit, cursor, self.reader.session, lambda _: True)

    def list_handoffs(
        self, target: str | None, source: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[HandoffView]:
        """Handoffs newest first, filtered by target, source and status."""
        prefix = keys.handoff_listing(target, source, status)
        by_source = (lambda v: v.source_agent == source) if target and source else (lambda _: True)
        return self._page(prefix, limit, cursor, self.reader.handoff, by_source)


def to_package_entry(entry: ContextEntryView) -> PackageEntry:
    """A context entry as a package shows it."""
    return PackageEntry(
        sequence_number=entry.sequence_number,
        context_type=entry.context_type,
        agent=entry.agent,
        content=entry.content,
        created_at=entry.created_at,
    )
