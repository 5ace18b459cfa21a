"""The expiry sweeper (CONTRACT §8): finds what fell due in the due-index and issues its expiry through the writer.

It decides nothing itself: `handoff.kernel.lifecycle.due_commands` says what is due for a session
at the sweep's time, and the commands go through `submit`, the same single writer as every client
write, with the version they were judged at. So a write that lands first wins (the expiry is
refused and rescheduled), a session never expires twice (the kernel refuses expiring one that is no
longer active), and the events are in the log, where `handoff replay` folds them.

The due-index entry of a session is replaced by its next due time only after its commands were
decided, in one atomic write: a crash in between leaves the old entry, which the next sweep reads
again (and finds the session already expired, or still due), so nothing due is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from handoff.kernel.commands import Command
from handoff.kernel.errors import DomainError, HandoffError
from handoff.kernel.lifecycle import due_commands, next_due
from handoff.kernel.state import SessionState
from handoff.ports import Outcome
from handoff.storage.due import due_entries, due_key, seed
from handoff.storage.kv import KeyValue, Write

log = logging.getLogger(__name__)

SWEEP_EVERY = 30.0  # seconds between sweeps when the last one found less than a full page
ERASE_EVERY = 3600.0  # seconds between retention erasure passes (until the job runner's `retention` job runs them)
SWEEP_PAGE = 100  # due-index entries one pass takes: a client write waits behind at most one page (bench.expiry)


class Sweeper:
    """One partition's (or the embedded store's) sweep: `sweep()` is one pass, `run()` sweeps forever."""

    def __init__(
        self,
        kv: KeyValue,
        state: Callable[[str], SessionState | None],
        submit: Callable[[Command], Awaitable[Outcome | None]],  # None: sent to be decided elsewhere (Kafka)
        clock: Callable[[], str],
        *,
        every: float = SWEEP_EVERY,
        page: int = SWEEP_PAGE,
        erase: Callable[[str], Awaitable[dict[str, int]]] | None = None,
    ) -> None:
        self.kv = kv
        self.state = state
        self.submit = submit
        self.clock = clock
        self.every = every
        self.page = page
        self.expired = 0  # expiry commands submitted without refusal, for logs and tests
        self.erase = erase  # retention erasure (CONTRACT §8), run every ERASE_EVERY seconds
        self._erased_at: float | None = None

    async def sweep(self) -> int:
        """One pass over the entries due now; returns how many it took (a full page: more may be due).

        A page's commands are submitted together, so the writer decides them in a few batches (one
        log sync each) instead of one batch apiece; then the page's entries are rescheduled in one write.
        """
        now = self.clock()
        entries = list(due_entries(self.kv, now, self.page))
        commands = [c for _, _, key in entries for c in _due(self.state(key), now)]
        results = await asyncio.gather(*(self.submit(c) for c in commands), return_exceptions=True)
        for command, result in zip(commands, results, strict=True):
            if isinstance(result, DomainError):  # a write won the race, or it is no longer active: judged again below
                log.debug("expiry of %s refused: %s", command.session_key, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                self.expired += 1
        writes: list[Write] = []
        for key, _, session in entries:
            writes.extend(self._reschedule(key, session))
        if writes:
            self.kv.write(writes)
        return len(entries)

    def _reschedule(self, key: bytes, session: str) -> list[Write]:
        state = self.state(session)
        at = next_due(state) if state is not None else None
        if at is None:
            return [(key, None)]
        new = due_key(at, session)
        return [] if new == key else [(new, b""), (key, None)]

    async def run(self) -> None:
        """Sweep until cancelled: again at once after a full page, else after `every` seconds."""
        seeded = seed(self.kv)
        if seeded:
            log.info("due-index seeded with %d sessions written before expiry existed", seeded)
        while True:
            try:
                taken = await self.sweep()
                await self._erase_if_due()
            except HandoffError as exc:  # UNAVAILABLE: the store refuses writes for now; the entries stay
                log.warning("expiry sweep stopped: %s", exc)
                taken = 0
            if taken < self.page:
                await asyncio.sleep(self.every)
            else:
                await asyncio.sleep(0)


    async def _erase_if_due(self) -> None:
        if self.erase is None:
            return
        now = asyncio.get_running_loop().time()
        if self._erased_at is not None and now - self._erased_at < ERASE_EVERY:
            return
        self._erased_at = now
        counts = await self.erase(self.clock())
        if counts.get("erased"):
            log.info("retention erased %d sessions", counts["erased"])


def _due(state: SessionState | None, now: str) -> list[Command]:
    return [] if state is None else due_commands(state, now)
