"""Fold a sequence of events into a fresh store: for `asOfVersion` reads, `handoff replay` and verification."""

from __future__ import annotations

from collections.abc import Iterable

from handoff.kernel.events import Envelope
from projections.projector import Changes, OverlayReader, project
from projections.store import KeyValue, StoreReader, changes_to_writes


def fold_events(kv: KeyValue, envelopes: Iterable[Envelope], batch_size: int = 1000) -> int:
    """Project every envelope into `kv`, committing every `batch_size` events; returns the count."""
    reader = StoreReader(kv)
    changes = Changes()
    pending = count = 0
    for env in envelopes:
        project(OverlayReader(reader, changes), env, changes)
        pending += 1
        count += 1
        if pending >= batch_size:
            kv.write(changes_to_writes(changes))
            changes, pending = Changes(), 0
    if pending:
        kv.write(changes_to_writes(changes))
    return count
