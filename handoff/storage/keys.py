r"""The key layout of the views in a byte-ordered key-value store, and their secondary indexes.

The log's own keys (``E:`` events, ``G:`` global order, ``T:`` decision state, ``K:`` receipts,
``M:position``) are `handoff.storage.log`'s; a Kafka worker's partition store adds ``O:`` and ``D:``
(`streams.partition`). The views' keys:

    S:<sessionKey>                       SessionView
    Y:<sessionKey>                       SummaryView
    C:<sessionKey>\\0<seq:012d>           ContextEntryView (a keyed session's without content: `projections.viewstore`)
    H:<handoffId>                        HandoffView
    I:<index>\\0<term>\\0<order>\\0<id>     index entry -> id, newest first (order = inverted ms)

Session keys and handoff ids cannot hold ``\\0`` (their alphabet is ``A-Za-z0-9._:-``), nor can agent
names (no control characters), so every prefix below is unambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

SEP = b"\x00"
VIEW_PREFIXES: tuple[bytes, ...] = (b"C:", b"H:", b"I:", b"S:", b"Y:")  # every view key starts with one of these
_MAX_MS = 10**13 - 1


def session_key(key: str) -> bytes:
    """Key of a SessionView."""
    return b"S:" + key.encode()


def summary_key(key: str) -> bytes:
    """Key of a SummaryView."""
    return b"Y:" + key.encode()


def context_prefix(key: str) -> bytes:
    """Prefix of a session's context entries."""
    return b"C:" + key.encode() + SEP


def context_key(key: str, seq: int) -> bytes:
    """Key of one context entry."""
    return context_key_under(context_prefix(key), seq)


def context_key_under(prefix: bytes, seq: int) -> bytes:
    """Key of one context entry under its session's `context_prefix` (for writers that hold the prefix)."""
    return prefix + b"%012d" % seq


def handoff_key(hid: str) -> bytes:
    """Key of a HandoffView."""
    return b"H:" + hid.encode()


def index_prefix(index: str, *terms: str) -> bytes:
    """Prefix of one index slice, e.g. ``index_prefix("Hts", agent, "pending")``."""
    return b"I:" + index.encode() + SEP + "\x01".join(terms).encode() + SEP


def _order(at: str) -> bytes:
    ms = int(datetime.fromisoformat(at).timestamp() * 1000) if at else 0
    return b"%013d" % (_MAX_MS - ms)


class IndexedSession(Protocol):
    """What the session indexes are built from (a `projections.views.SessionView`)."""

    @property
    def session_key(self) -> str:
        """The session's key."""

    @property
    def status(self) -> str:
        """The session's status."""

    @property
    def participants(self) -> Sequence[str]:
        """The agents taking part."""

    @property
    def created_at(self) -> str:
        """When it was registered (ISO 8601)."""


class IndexedHandoff(Protocol):
    """What the handoff indexes are built from (a `projections.views.HandoffView`)."""

    @property
    def handoff_id(self) -> str:
        """The handoff's id."""

    @property
    def status(self) -> str:
        """The handoff's status."""

    @property
    def source_agent(self) -> str:
        """The requesting agent."""

    @property
    def target_agent(self) -> str:
        """The agent asked to take over or help."""

    @property
    def created_at(self) -> str:
        """When it was requested (ISO 8601)."""


def session_index(view: IndexedSession) -> set[bytes]:
    """Index entries of a session: all, by status, by participant, by participant and status."""
    tail = _order(view.created_at) + SEP + view.session_key.encode()
    keys = {index_prefix("S*") + tail, index_prefix("Ss", view.status) + tail}
    for agent in view.participants:
        keys.add(index_prefix("Sa", agent) + tail)
        keys.add(index_prefix("Sas", agent, view.status) + tail)
    return keys


def handoff_index(view: IndexedHandoff) -> set[bytes]:
    """Index entries of a handoff: all, by status, by target, by source, each also by status."""
    tail = _order(view.created_at) + SEP + view.handoff_id.encode()
    return {
        index_prefix("H*") + tail,
        index_prefix("Hs", view.status) + tail,
        index_prefix("Ht", view.target_agent) + tail,
        index_prefix("Hts", view.target_agent, view.status) + tail,
        index_prefix("Hf", view.source_agent) + tail,
        index_prefix("Hfs", view.source_agent, view.status) + tail,
    }


def session_listing(agent: str | None, status: str | None) -> bytes:
    """The index slice a session listing reads: by participant and/or status, else all."""
    if agent and status:
        return index_prefix("Sas", agent, status)
    if agent:
        return index_prefix("Sa", agent)
    if status:
        return index_prefix("Ss", status)
    return index_prefix("S*")


def handoff_listing(target: str | None, source: str | None, status: str | None) -> bytes:
    """The index slice a handoff listing reads (with both target and source, the caller filters by source)."""
    if target:
        return index_prefix("Hts", target, status) if status else index_prefix("Ht", target)
    if source:
        return index_prefix("Hfs", source, status) if status else index_prefix("Hf", source)
    return index_prefix("Hs", status) if status else index_prefix("H*")


def index_id(index_entry: bytes) -> str:
    """The id an index entry points at."""
    return index_entry.rsplit(SEP, 1)[1].decode()
