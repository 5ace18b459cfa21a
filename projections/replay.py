"""Fold a sequence of events into a fresh store: for `asOfVersion` reads, `handoff replay` and verification."""

from __future__ import annotations

from collections.abc import Iterable

from handoff.kernel.events import ContextAppended, Envelope
from projections.projector import Changes, OverlayReader, project, project_appends
from projections.store import KeyValue, StoreReader, changes_to_writes


def fold_events(kv: KeyValue, envelopes: Iterable[Envelope], batch_size: int = 1000) -> int:
    """Project every envelope into `kv`, committing every `batch_size` events; returns the count.

    A run of one session's consecutive ContextAppended events (most of any log) is folded in one
    step by `project_appends`, which equals projecting them one by one.
    """
    reader = StoreReader(kv)
    changes = Changes()
    overlay = OverlayReader(reader, changes)
    run: list[Envelope] = []
    pending = count = 0
    for env in envelopes:
        if type(env.event) is ContextAppended:
            if run and run[0].session_key != env.session_key:
                project_appends(overlay, run, changes)
                run = []
            run.append(env)
        else:
            if run:
                project_appends(overlay, run, changes)
                run = []
            project(overlay, env, changes)
        pending += 1
        count += 1
        if pending >= batch_size:
            if run:
                project_appends(overlay, run, changes)
                run = []
            kv.write(changes_to_writes(changes))
            changes, pending = Changes(), 0
            overlay = OverlayReader(reader, changes)
    if run:
        project_appends(overlay, run, changes)
    if pending:
        kv.write(changes_to_writes(changes))
    return count
