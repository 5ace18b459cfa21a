"""The ordered byte key-value store: the `KeyValue` port, its in-memory fake and its RocksDB adapter.

The embedded engine keeps its log and its views in one such database, so one WriteBatch commits an
event together with every view it changes. What the keys mean is `handoff.storage.keys` (and the
log's own keys, `handoff.storage.log`); how views are encoded is `projections.viewstore`.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Iterator
from typing import Protocol, cast

from rocksdict import IngestExternalFileOptions, Options, Rdict, ReadOptions, SstFileWriter, WriteBatch, WriteOptions

log = logging.getLogger(__name__)

Write = tuple[bytes, bytes | None]


class KeyValue(Protocol):
    """An ordered byte key-value store."""

    def get(self, key: bytes) -> bytes | None:
        """The value, or None."""

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of `keys` (None for a missing one), in their order: one read, not one per key."""

    def scan(self, prefix: bytes, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with `prefix`, ascending, strictly after `after` if given."""

    def values(self, prefix: bytes) -> Iterator[bytes]:
        """The values of `scan(prefix)`, without their keys."""

    def write(self, writes: Iterable[Write], sync: bool = False) -> None:
        """Apply puts (value) and deletes (None) atomically."""


class InMemoryKeyValue:
    """The fake: a sorted list of keys beside a dict."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        """The value, or None."""
        return self._data.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of `keys` (None for a missing one), in their order."""
        return [self._data.get(key) for key in keys]

    def scan(self, prefix: bytes, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries under `prefix`, ascending, after `after`."""
        start = bisect.bisect_right(self._keys, after) if after is not None and after >= prefix else None
        i = bisect.bisect_left(self._keys, prefix) if start is None else start
        while i < len(self._keys) and self._keys[i].startswith(prefix):
            key = self._keys[i]
            yield key, self._data[key]
            i += 1

    def values(self, prefix: bytes) -> Iterator[bytes]:
        """The values under `prefix`, ascending by key."""
        for _, value in self.scan(prefix):
            yield value

    def write(self, writes: Iterable[Write], sync: bool = False) -> None:
        """Apply the writes, all or none, as the RocksDB adapter's WriteBatch does."""
        batch = list(writes)
        for key, value in batch:
            if type(key) is not bytes or (value is not None and type(value) is not bytes):
                raise ValueError("keys and values must be bytes")
        for key, value in batch:
            if value is None:
                if self._data.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every entry in key order."""
        for key in self._keys:
            yield key, self._data[key]


def _upper_bound(prefix: bytes) -> bytes | None:
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class RocksKeyValue:
    """The real adapter over one rocksdict database in raw (bytes) mode."""

    def __init__(self, path: str, *, read_only: bool = False, bulk: bool = False) -> None:
        """Open (creating) the database at `path`.

        `bulk` is for stores built from scratch in one go (replay, verification): writes skip the
        write-ahead log and `close` flushes instead; a crash midway leaves a store to rebuild.
        """
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_background_jobs(2)
        if bulk:  # no compaction while it is built: a store opened normally compacts itself later
            options.set_disable_auto_compactions(True)
        self._open = (path, options, read_only)
        self.db = self._open_db()
        self.bulk = bulk
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        if bulk:
            self._nosync.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says method

    def _open_db(self) -> Rdict:
        path, options, read_only = self._open
        if read_only:
            from rocksdict import AccessType

            return Rdict(path, options, access_type=AccessType.read_only())
        return Rdict(path, options)

    def reopen(self) -> None:
        """Close and open the database again: how RocksDB takes writes again after a background error (ENOSPC)."""
        try:
            self.db.close()
        except Exception:
            log.warning("closing the store before reopening it failed", exc_info=True)
        self.db = self._open_db()

    def get(self, key: bytes) -> bytes | None:
        """The value, or None."""
        value = self.db.get(key)
        return None if value is None else bytes(value)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of `keys` (None for a missing one), in their order: one RocksDB MultiGet."""
        return cast(list[bytes | None], self.db.get(cast(list[str | int | float | bytes | bool], keys)))

    def scan(self, prefix: bytes, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries under `prefix`, ascending, after `after`."""
        opts = ReadOptions()
        upper = _upper_bound(prefix)
        if upper is not None:
            opts.set_iterate_upper_bound(upper)
        start = prefix if after is None or after < prefix else after
        if upper is not None and (after is None or after < prefix):
            # the bound keeps every key inside the prefix: no per-entry checks in Python
            yield from self.db.items(from_key=start, read_opt=opts)
            return
        for raw_key, value in self.db.items(from_key=start, read_opt=opts):
            key = cast(bytes, raw_key)  # raw mode: keys are bytes
            if after is not None and key <= after:
                continue
            if not key.startswith(prefix):
                return
            yield key, value

    def values(self, prefix: bytes) -> Iterator[bytes]:
        """The values under `prefix`, ascending by key, straight from RocksDB's iterator."""
        opts = ReadOptions()
        upper = _upper_bound(prefix)
        if upper is None:
            for _, value in self.scan(prefix):
                yield value
            return
        opts.set_iterate_upper_bound(upper)
        yield from self.db.values(from_key=prefix, read_opt=opts)

    def values_between(self, start: bytes, end: bytes) -> Iterator[bytes]:
        """The values of the keys from `start` (included) to `end` (excluded), ascending."""
        opts = ReadOptions()
        opts.set_iterate_upper_bound(end)
        yield from self.db.values(from_key=start, read_opt=opts)

    def items_between(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The entries of the keys from `start` (included) to `end` (excluded), ascending."""
        opts = ReadOptions()
        opts.set_iterate_upper_bound(end)
        yield from self.db.items(from_key=start, read_opt=opts)

    @property
    def path(self) -> str:
        """Where the database lives (another process can open it read-only there)."""
        return self._open[0]

    def write(self, writes: Iterable[Write], sync: bool = False) -> None:
        """Apply the writes in one WriteBatch; with `sync` the WAL is fsynced before returning."""
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        for key, value in writes:
            if value is None:
                delete(key)
            else:
                put(key, value)
        self.db.write(batch, self._sync if sync and not self.bulk else self._nosync)

    def export_sst(self, path: str) -> int:
        """Write every entry, in key order, into a new SST file at `path` for another store to `ingest`.

        Returns the number of entries; with none, no file is written.
        """
        writer: SstFileWriter | None = None
        count = 0
        for key, value in self.db.items():
            if writer is None:
                writer = SstFileWriter(Options(raw_mode=True))
                writer.open(path)
            writer[key] = value
            count += 1
        if writer is not None:
            writer.finish()
        return count

    def ingest(self, paths: list[str]) -> None:
        """Add the entries of SST files from `export_sst`, moving the files in (keys must not be here yet)."""
        if paths:
            options = IngestExternalFileOptions()
            options.set_move_files(True)
            self.db.ingest_external_file(paths, options)

    def sync_log(self) -> None:
        """Make every write so far durable: RocksDB's FlushWAL(sync).

        It releases the GIL while it fsyncs, where a synced `write` holds it, fsync included.
        """
        self.db.flush_wal(True)

    def compact_all(self) -> None:
        """Flush the memtable and rewrite every file, so deleted and overwritten values leave the disk.

        What erasure relies on: after it, no SST or WAL file holds a value deleted or replaced before it.
        """
        self.db.flush(True)
        self.db.compact_range(None, None)
        self.db.flush_wal(True)

    def close(self) -> None:
        """Flush and release the database lock."""
        if self.bulk:
            self.db.flush()
        self.db.close()

    def discard(self) -> None:
        """Release the database lock without flushing: a scratch store about to be deleted."""
        self.db.close()
