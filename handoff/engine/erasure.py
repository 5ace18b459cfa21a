"""Retention erasure in a store (CONTRACT §8): find the ended sessions whose retention ran out and erase them.

It decides nothing itself: `handoff.kernel.erasure.retention_erasure` says whether a session is due
at `now`, and the `EraseSession` goes through `submit`, the session's single writer, with the
version it was judged at (a session erased meanwhile, or written to, refuses it). The embedded
engine runs it over its whole store; a Kafka worker would run it over a partition's store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping

from handoff.kernel.commands import Command
from handoff.kernel.erasure import ERASE_AFTER_DAYS, retention_erasure
from handoff.kernel.errors import DomainError
from handoff.kernel.state import SessionState
from handoff.storage.keys import index_id, index_prefix
from handoff.storage.kv import KeyValue

log = logging.getLogger(__name__)

ENDED = ("closed", "completed", "expired")


def ended_sessions(kv: KeyValue) -> Iterator[str]:
    """Every session closed, completed or expired, by the status index."""
    for status in ENDED:
        for entry, _ in kv.scan(index_prefix("Ss", status)):
            yield index_id(entry)


async def erase_due(
    kv: KeyValue,
    state: Callable[[str], SessionState | None],
    submit: Callable[[Command], Awaitable[object]],
    now: str,
    erase_after_days: Mapping[str, int] = ERASE_AFTER_DAYS,
) -> dict[str, int]:
    """Erase every ended session due at `now`: counts ``checked``, ``erased``, ``refused`` (judged again next time)."""
    counts = {"checked": 0, "erased": 0, "refused": 0}
    for key in list(ended_sessions(kv)):
        counts["checked"] += 1
        current = state(key)
        command = None if current is None else retention_erasure(current, now, erase_after_days)
        if command is None:
            continue
        try:
            await submit(command)
        except DomainError as exc:
            log.info("retention erasure of %s refused: %s", key, exc)
            counts["refused"] += 1
        else:
            counts["erased"] += 1
    return counts
