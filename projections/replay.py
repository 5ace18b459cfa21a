"""Fold a sequence of events into a fresh store: for `asOfVersion` reads, `handoff replay` and verification."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from handoff.kernel.events import Envelope
from handoff.storage.kv import KeyValue
from projections.projector import Changes, RunFolder
from projections.viewstore import StoreReader, changes_to_writes


def fold_events(
    kv: KeyValue,
    envelopes: Iterable[Envelope],
    batch_size: int = 1000,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Project every envelope into `kv`, committing every `batch_size` events; returns the count.

    A `RunFolder` folds each session's appends (most of any log) as runs, so logs that interleave
    sessions (a Kafka partition) gain as much as those that do not; in a log stored session by
    session, the entries are written in key order.
    `on_batch`, if given, hears how many events each committed batch held (a progress display).
    """
    reader = StoreReader(kv)

    def commit(folder: RunFolder, pending: int) -> None:
        folder.flush()
        kv.write(changes_to_writes(folder.changes))
        if on_batch is not None:
            on_batch(pending)

    folder = RunFolder(reader, Changes())
    pending = count = 0
    for env in envelopes:
        folder.add(env)
        pending += 1
        count += 1
        if pending >= batch_size:
            commit(folder, pending)
            folder, pending = RunFolder(reader, Changes()), 0
    if pending:
        commit(folder, pending)
    return count
