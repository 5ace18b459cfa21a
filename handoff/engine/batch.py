"""A batch's pending effects, and the engine's caches of views, kept apart from the engine's control flow.

`Batch` is what `Engine.decide_batch` hands a caller that commits elsewhere (the Kafka decider):
the events decided, their records and every store write that commits them. `CachedReader` serves
the views a decision reads (session, summary, handoff) from bounded caches in front of the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from handoff.kernel.events import Envelope
from handoff.kernel.receipt import Receipt
from handoff.kernel.state import SessionState
from handoff.storage import datakeys as DK
from handoff.storage.kv import KeyValue, Write
from projections.projector import Changes, RunFolder
from projections.views import HandoffView, SessionView, SummaryView
from projections.viewstore import StoreReader

T = TypeVar("T")


class Lru(OrderedDict[str, object]):
    """A bounded map: the least recently remembered key goes first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: str, value: object) -> None:
        """Keep `value` under `key`, as the most recent."""
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)

    def through(self, key: str, load: Callable[[str], T | None]) -> T | None:
        """The cached value, else `load(key)` (remembered when found)."""
        hit = self.get(key)
        if hit is None:
            hit = load(key)
            if hit is not None:
                self.remember(key, hit)
        return hit  # type: ignore[return-value]


class CachedReader:
    """Views from the caches, else decoded from the store (and then cached)."""

    def __init__(self, kv: KeyValue, cache_size: int) -> None:
        self.store = StoreReader(kv)
        self.sessions = Lru(cache_size)
        self.summaries = Lru(cache_size)
        self.handoffs = Lru(cache_size)

    def session(self, key: str) -> SessionView | None:
        """The session view of `key`, or None."""
        return self.sessions.through(key, self.store.session)

    def summary(self, key: str) -> SummaryView | None:
        """The summary of session `key`, or None."""
        return self.summaries.through(key, self.store.summary)

    def handoff(self, hid: str) -> HandoffView | None:
        """The handoff view of `hid`, or None."""
        return self.handoffs.through(hid, self.store.handoff)

    def commit(self, changes: Changes) -> None:
        """Cache the views a committed batch wrote."""
        for key, session in changes.sessions.items():
            self.sessions.remember(key, session)
        for key, summary in changes.summaries.items():
            self.summaries.remember(key, summary)
        for hid, handoff in changes.handoffs.items():
            self.handoffs.remember(hid, handoff)


@dataclass
class Batch:
    """The pending effects of the commands decided so far in one batch (see the module docstring).

    `envelopes` are its events in decision order, `records[(sessionKey, version)]` their encoded
    bytes, and `writes` every store write that commits them (events, global order, decision state,
    receipts, views, log position). The other fields are the engine's own bookkeeping.
    """

    states: dict[str, SessionState] = field(default_factory=dict)
    receipts: dict[tuple[str, str], Receipt] = field(default_factory=dict)
    records: dict[tuple[str, int], bytes] = field(default_factory=dict)
    changes: Changes = field(default_factory=Changes)
    writes: list[Write] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    ciphers: dict[str, DK.DataCipher] = field(default_factory=dict)  # data keys created in this batch
    erased: list[str] = field(default_factory=list)  # sessions whose data key this batch destroys
    folder: RunFolder = field(init=False)
