"""Fold a sequence of events into a fresh store: for `asOfVersion` reads, `handoff replay` and verification."""

from __future__ import annotations

from collections.abc import Iterable

from handoff.kernel.events import ContextAppended, Envelope
from projections.projector import Changes, OverlayReader, project, project_appends
from projections.store import KeyValue, StoreReader, changes_to_writes


def fold_events(kv: KeyValue, envelopes: Iterable[Envelope], batch_size: int = 1000) -> int:
    """Project every envelope into `kv`, committing every `batch_size` events; returns the count.

    Each session's ContextAppended events (most of any log) are held back and folded as one run by
    `project_appends`, which equals projecting them one by one; any other event, and the end of a
    batch, first folds every held run. Sessions' views are independent, so holding one session's
    appends while another's are folded changes nothing, and logs that interleave sessions (a Kafka
    partition) gain as much as those that do not. In a log stored session by session, the entries
    are written in key order.
    """
    reader = StoreReader(kv)
    changes = Changes()
    overlay = OverlayReader(reader, changes)
    runs: dict[str, list[Envelope]] = {}
    pending = count = 0
    for env in envelopes:
        key = env.session_key
        if type(env.event) is ContextAppended:
            run = runs.get(key)
            if run is None:
                runs[key] = [env]
            else:
                run.append(env)
        else:
            for run in runs.values():
                project_appends(overlay, run, changes)
            runs.clear()
            project(overlay, env, changes)
        pending += 1
        count += 1
        if pending >= batch_size:
            for run in runs.values():
                project_appends(overlay, run, changes)
            runs.clear()
            kv.write(changes_to_writes(changes))
            changes, pending = Changes(), 0
            overlay = OverlayReader(reader, changes)
    for run in runs.values():
        project_appends(overlay, run, changes)
    if pending:
        kv.write(changes_to_writes(changes))
    return count
