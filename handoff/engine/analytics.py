"""Embedded-mode analytics: the analytics fold over the whole log at start, then over every committed batch.

The view lives in memory: a restart folds the log again, so it answers as before. Buckets older
than 7 days are pruned whenever the clock enters a new hour.

The writer only queues each committed batch's envelopes (a list append): they are folded when an
answer is asked for, or once `FOLD_AT` of them wait, so the fold (tens of µs per event) stays off the
write path's latency for all but one batch in many.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from handoff.engine.engine import Engine
from handoff.kernel.codec import decode_envelope
from handoff.kernel.events import Envelope
from projections.analytics import AnalyticsView, answer, fold_analytics, hour_of, prune
from projections.projector import Changes

FOLD_AT = 10_000  # envelopes queued before they are folded without an answer asked for


class EmbeddedAnalytics:
    """An `AnalyticsSource` folded in the engine's process; build it before the engine starts writing."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.view = AnalyticsView()
        self.clock = clock
        self._pruned_hour = hour_of(clock())
        self._waiting: list[Envelope] = []
        for record in engine.log.all_values():
            fold_analytics(self.view, decode_envelope(record))
        prune(self.view, clock())
        engine.listeners.append(self._on_commit)

    def _on_commit(self, envelopes: list[Envelope], _changes: Changes) -> None:
        self._waiting.extend(envelopes)
        if len(self._waiting) >= FOLD_AT:
            self._fold_waiting()

    def _fold_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for env in waiting:
            fold_analytics(self.view, env)

    async def analytics(self, window: str, agent: str | None) -> dict[str, Any]:
        """The answer for a window ending now."""
        self._fold_waiting()
        now = self.clock()
        if hour_of(now) != self._pruned_hour:
            self._pruned_hour = hour_of(now)
            prune(self.view, now)
        return answer([self.view], window, agent, now)
