"""The projector: applies one event to every view it touches, reading through a `ViewReader`.

It returns `Changes` instead of writing, so the embedded engine can put them in the same
WriteBatch as the event, a Kafka worker can put them in its partition's store, and replay can put
them in a fresh store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from handoff.kernel.events import ContextAppended, Envelope
from handoff.kernel.types import AgentId
from handoff.storage import keys
from projections.folds import (
    affected_handoffs,
    entry_of,
    fold_handoff,
    fold_session,
    fold_session_appends,
    fold_summary,
    fold_summary_appends,
)
from projections.views import ContextEntryView, HandoffView, SessionView, SummaryView


class ViewReader(Protocol):
    """Typed point reads of the current views."""

    def session(self, key: str) -> SessionView | None:
        """The session view, or None."""

    def summary(self, key: str) -> SummaryView | None:
        """The summary view, or None."""

    def handoff(self, hid: str) -> HandoffView | None:
        """The handoff view, or None."""


@dataclass
class Changes:
    """What one or more events changed, to be written atomically."""

    sessions: dict[str, SessionView] = field(default_factory=dict)
    summaries: dict[str, SummaryView] = field(default_factory=dict)
    handoffs: dict[str, HandoffView] = field(default_factory=dict)
    entries: dict[tuple[str, int], ContextEntryView] = field(default_factory=dict)
    in_log: set[tuple[str, int]] = field(default_factory=set)  # entries whose content the store reads from the log
    index_put: dict[bytes, bytes] = field(default_factory=dict)
    index_delete: set[bytes] = field(default_factory=set)

    def reindex(self, old: set[bytes], new: set[bytes]) -> None:
        """Record the index entries that changed between two versions of a view."""
        for gone in old - new:
            self.index_put.pop(gone, None)
            self.index_delete.add(gone)
        for added in new - old:
            self.index_delete.discard(added)
            self.index_put[added] = keys.index_id(added).encode()


class OverlayReader:
    """A reader that sees `changes` not yet written on top of a base reader."""

    def __init__(self, base: ViewReader, changes: Changes) -> None:
        self.base = base
        self.changes = changes

    def session(self, key: str) -> SessionView | None:
        """The pending session view, else the stored one."""
        return self.changes.sessions.get(key) or self.base.session(key)

    def summary(self, key: str) -> SummaryView | None:
        """The pending summary view, else the stored one."""
        return self.changes.summaries.get(key) or self.base.summary(key)

    def handoff(self, hid: str) -> HandoffView | None:
        """The pending handoff view, else the stored one."""
        return self.changes.handoffs.get(hid) or self.base.handoff(hid)


def project(reader: ViewReader, env: Envelope, changes: Changes) -> None:
    """Fold `env` into every view it touches, adding the results to `changes`."""
    key = env.session_key
    before: dict[str, HandoffView] = {}
    for hid in affected_handoffs(env):
        old_h = reader.handoff(hid)
        if old_h is not None:
            before[hid] = old_h
        new_h = fold_handoff(old_h, env)
        if new_h is not None and new_h is not old_h:
            changes.handoffs[hid] = new_h
            changes.reindex(keys.handoff_index(old_h) if old_h else set(), keys.handoff_index(new_h))
    entry = entry_of(env)
    old_s, old_y = reader.session(key), reader.summary(key)
    _keep(changes, key, old_s, fold_session(old_s, env, before, entry), old_y, fold_summary(old_y, env, entry))
    if entry is not None:
        changes.entries[(key, entry.sequence_number)] = entry
        if type(env.event) is ContextAppended and env.event.encrypted == b"":
            changes.in_log.add((key, entry.sequence_number))


def project_appends(reader: ViewReader, envs: Sequence[Envelope], changes: Changes) -> None:
    """`project` each of a run of one session's ContextAppended events, folding the run in one step."""
    key = envs[0].session_key
    entries = cast(list[ContextEntryView], [entry_of(env) for env in envs])  # an append always adds one
    old_s, old_y = reader.session(key), reader.summary(key)
    new_s, new_y = fold_session_appends(old_s, envs, entries), fold_summary_appends(old_y, envs, entries)
    _keep(changes, key, old_s, new_s, old_y, new_y)
    pending, in_log = changes.entries, changes.in_log
    for env, entry in zip(envs, entries, strict=True):
        at = (key, entry.sequence_number)
        pending[at] = entry
        if env.event.encrypted == b"":  # type: ignore[union-attr]  # an append's: a key behind it
            in_log.add(at)


def _keep(
    changes: Changes,
    key: str,
    old_s: SessionView | None,
    new_s: SessionView | None,
    old_y: SummaryView | None,
    new_y: SummaryView,
) -> None:
    """Record a session's new session view and summary, and the index entries that changed with them."""
    if new_s is not None and new_s is not old_s:
        changes.sessions[key] = new_s
        if old_s is None or _indexed(old_s) != _indexed(new_s):
            changes.reindex(keys.session_index(old_s) if old_s else set(), keys.session_index(new_s))
    if new_y is not old_y:
        changes.summaries[key] = new_y


class RunFolder:
    """Projects events into `changes` like `project`, holding each session's appends to fold them as one run.

    Sessions' views are independent, so one session's appends may wait while others' events fold.
    Any other kind of event first folds every held run, so views are read and entries written in
    log order across that event; call `flush` before reading the views or writing `changes`.
    """

    def __init__(self, reader: ViewReader, changes: Changes) -> None:
        self.reader = OverlayReader(reader, changes)
        self.changes = changes
        self._runs: dict[str, list[Envelope]] = {}

    def add(self, env: Envelope) -> None:
        """Project one more event."""
        if type(env.event) is ContextAppended:
            run = self._runs.get(env.session_key)
            if run is None:
                self._runs[env.session_key] = [env]
            else:
                run.append(env)
        else:
            self.flush()
            project(self.reader, env, self.changes)

    def flush(self) -> None:
        """Fold every held run into `changes`."""
        for run in self._runs.values():
            project_appends(self.reader, run, self.changes)
        self._runs.clear()


def _indexed(view: SessionView) -> tuple[str, list[AgentId], str]:
    """The fields a session's index entries depend on."""
    return view.status, view.participants, view.created_at
