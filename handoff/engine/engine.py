"""The embedded engine: one writer task decides commands in batches and commits each batch atomically.

Every command of a batch is decided against the state left by the ones before it (so commands on one
session are applied one at a time, in arrival order), its event and every view it changes go into
one RocksDB WriteBatch (group commit), and only after that batch is durable are the callers
answered. A failed command adds nothing to the batch; a failed write answers every caller of the
batch with UNAVAILABLE and leaves the caches as they were.

Durability without stalling the event loop: rocksdict holds the GIL for the whole of a synced write,
fsync included (several ms on a virtual disk), so with `sync=True` every batch froze the process.
Given `sync_log` (RocksDB's FlushWAL(sync), which releases the GIL), the writer instead applies the
batch unsynced on the loop, then syncs the log in a thread while the loop keeps serving; until that
sync returns, `settled()` holds back the readers of the store, so nothing not yet durable is read.
A failed sync leaves the store holding a batch nobody was told of: the engine then refuses every
further write (UNAVAILABLE) until it is restarted and the store recovers from its log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from handoff.engine import log as L
from handoff.engine.ids import Clock, IdGenerator
from handoff.engine.logsync import LogSyncThread
from handoff.kernel.codec import decode_envelope
from handoff.kernel.commands import Command, RequestHandoff
from handoff.kernel.decide import Ctx, execute_encoded
from handoff.kernel.errors import HandoffError, Unavailable
from handoff.kernel.events import Envelope, PackageRecord
from handoff.kernel.package import PackageEntry, build_package
from handoff.kernel.receipt import Receipt, check_retry, command_digest, receipt_of
from handoff.kernel.state import SessionState
from handoff.kernel.types import DEFAULT_TOKEN_BUDGET, Limits
from handoff.ports import Outcome
from projections.projector import Changes, OverlayReader, RunFolder
from projections.queries import Queries, to_package_entry
from projections.replay import fold_events
from projections.store import InMemoryKeyValue, KeyValue, StoreReader, Write, changes_to_writes
from projections.summary import package_head
from projections.views import HandoffView, SessionView, SummaryView

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Lru(OrderedDict[str, object]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: str, value: object) -> None:
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


class _CachedReader:
    """Views from the caches, else decoded from the store (and then cached)."""

    def __init__(self, kv: KeyValue, cache_size: int) -> None:
        self.store = StoreReader(kv)
        self.sessions = _Lru(cache_size)
        self.summaries = _Lru(cache_size)
        self.handoffs = _Lru(cache_size)

    def session(self, key: str) -> SessionView | None:
        return self.sessions.through(key, self.store.session)

    def summary(self, key: str) -> SummaryView | None:
        return self.summaries.through(key, self.store.summary)

    def handoff(self, hid: str) -> HandoffView | None:
        return self.handoffs.through(hid, self.store.handoff)

    def commit(self, changes: Changes) -> None:
        for key, session in changes.sessions.items():
            self.sessions.remember(key, session)
        for key, summary in changes.summaries.items():
            self.summaries.remember(key, summary)
        for hid, handoff in changes.handoffs.items():
            self.handoffs.remember(hid, handoff)


@dataclass
class _Batch:
    """The pending effects of the commands decided so far in one batch."""

    states: dict[str, SessionState] = field(default_factory=dict)
    receipts: dict[tuple[str, str], Receipt] = field(default_factory=dict)
    records: dict[tuple[str, int], bytes] = field(default_factory=dict)
    changes: Changes = field(default_factory=Changes)
    writes: list[Write] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    folder: RunFolder = field(init=False)


Listener = Callable[[list[Envelope], Changes], None]


class Engine:
    """Decide, append, project and query, on one embedded store."""

    def __init__(
        self,
        kv: KeyValue,
        *,
        limits: Limits | None = None,
        sync: bool = True,
        max_batch: int = 512,
        cache_size: int = 10_000,
        clock: Callable[[], str] | None = None,
        new_id: Callable[[], str] | None = None,
        sync_log: Callable[[], None] | None = None,
    ) -> None:
        self.kv = kv
        self.log = L.EventLog(kv)
        self.queries = Queries(kv)
        self.limits = limits or Limits()
        self.sync = sync
        self.max_batch = max_batch
        self.clock = clock or Clock()
        self.new_id = new_id or IdGenerator()
        self.reader = _CachedReader(kv, cache_size)
        self.states = _Lru(cache_size)
        self.position = self.log.position()
        self.listeners: list[Listener] = []
        self.sync_log = sync_log
        self._plain_ctx: Ctx | None = None
        self._queue: asyncio.Queue[tuple[Command, asyncio.Future[Outcome]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._syncing: asyncio.Future[None] | None = None  # set while a written batch is not yet durable
        self._broken: str | None = None  # why writes are refused after a failed log sync
        self._log_sync: LogSyncThread | None = None

    # -- the write path -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer task."""
        self._queue = asyncio.Queue()
        if self.sync_log is not None and self.sync:
            self._log_sync = LogSyncThread(self.sync_log)
        self._task = asyncio.create_task(self._writer(), name="handoff-writer")

    async def stop(self) -> None:
        """Finish the queued commands, then stop the writer."""
        if self._task is None or self._queue is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        if self._log_sync is not None:
            self._log_sync.close()
            self._log_sync = None

    async def submit(self, command: Command) -> Outcome:
        """Decide and commit one command; raises a HandoffError if it is refused."""
        if self._queue is None:
            raise Unavailable("the engine is not running")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self._queue.put((command, future))
        return await future

    async def _writer(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            items = [await queue.get()]
            while len(items) < self.max_batch and not queue.empty():
                items.append(queue.get_nowait())
            results: list[Outcome | HandoffError]
            try:
                if self._broken is not None:
                    results = [Unavailable(self._broken)] * len(items)
                else:
                    results, batch = self.decide_batch([c for c, _ in items])
                    if batch.writes:
                        await self._write(batch.writes)
                        self._commit(batch)
            except Exception as exc:  # a failed write must answer every caller
                log.exception("batch of %d commands failed to commit", len(items))
                failure = Unavailable(f"the store could not commit the write: {exc}")
                results = [failure] * len(items)
            for (_, future), result in zip(items, results, strict=True):
                if not future.done():
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                queue.task_done()

    async def _write(self, writes: list[Write]) -> None:
        """Make the batch durable (when `sync`) without holding up the event loop for the fsync."""
        if not self.sync:
            self.kv.write(writes, False)  # a memtable insert: a thread hop would cost more than it saves
            return
        if self._log_sync is None:
            await asyncio.to_thread(self.kv.write, writes, True)
            return
        self.kv.write(writes, False)
        syncing = self._syncing = asyncio.get_running_loop().create_future()
        try:
            await self._log_sync.sync()
        except Exception as exc:
            self._broken = f"the log could not be synced to disk ({exc}); restart the engine"
            log.critical("log sync failed; refusing writes until restart: %s", exc)
            raise
        finally:
            self._syncing = None
            syncing.set_result(None)

    async def settled(self) -> None:
        """Return once no written batch awaits its log sync: a read of the store then sees only durable data.

        The caller must read without awaiting in between, or a later batch may be in flight again.
        """
        while self._syncing is not None:
            await asyncio.shield(self._syncing)

    def write_now(self, commands: list[Command]) -> list[Outcome | HandoffError]:
        """Decide and commit a batch synchronously, without the writer task (benchmarks, import tools)."""
        results, batch = self.decide_batch(commands)
        if batch.writes:
            self.kv.write(batch.writes, self.sync)
            self._commit(batch)
        return results

    def decide_batch(self, commands: list[Command]) -> tuple[list[Outcome | HandoffError], _Batch]:
        """Decide each command against the state the previous ones left; collect the batch's writes."""
        batch = _Batch()
        batch.folder = RunFolder(self.reader, batch.changes)
        results: list[Outcome | HandoffError] = []
        for command in commands:
            try:
                results.append(self._decide_one(command, batch))
            except HandoffError as exc:
                results.append(exc)
        batch.folder.flush()  # a projection bug fails the whole batch: nothing is written
        if batch.envelopes:
            batch.writes.extend((L.state_key(k), L.encode_state(s)) for k, s in batch.states.items())
            batch.writes.extend(changes_to_writes(batch.changes))
            batch.writes.append((L.POSITION_KEY, b"%d" % (self.position + len(batch.envelopes))))
        return results, batch

    def _decide_one(self, command: Command, batch: _Batch) -> Outcome:
        key = command.session_key
        state = batch.states.get(key) or self.state(key)
        ikey = command.idempotency_key
        if ikey is not None:
            first = batch.receipts.get((key, ikey)) or self.log.receipt(key, ikey)
            if first is not None:
                check_retry(first, command)
                record = batch.records.get((key, first.version)) or self.log.record(key, first.version)
                assert record is not None, "a receipt always points at a stored event"
                return Outcome(decode_envelope(record), first, replayed=True)
        package = None
        if isinstance(command, RequestHandoff) and state is not None and state.status == "active":
            batch.folder.flush()  # the package reads the views as of this command
            package = self._package(batch.folder.reader, batch, state, command.token_budget or DEFAULT_TOKEN_BUDGET)
        new_state, env, record = execute_encoded(state, command, self._ctx(package))
        batch.folder.add(env)  # appends fold per session at the end of the batch
        receipt = receipt_of(new_state, env, command_digest(command)) if ikey is not None else None
        L.add_event_writes(batch.writes, self.position + len(batch.envelopes) + 1, key, env.version, record)
        if receipt is not None:
            assert ikey is not None
            batch.receipts[(key, ikey)] = receipt
            batch.writes.append((L.receipt_key(key, ikey), L.encode_receipt(receipt)))
        batch.states[key] = new_state
        batch.records[(key, env.version)] = record
        batch.envelopes.append(env)
        return Outcome(env, receipt, state=new_state)

    def _ctx(self, package: PackageRecord | None) -> Ctx:
        """The decision context; without a package, one per clock tick is shared by the commands in it."""
        now = self.clock()
        if package is not None:
            return Ctx(now=now, new_id=self.new_id, limits=self.limits, package=package)
        ctx = self._plain_ctx
        if ctx is None or ctx.now != now:
            ctx = self._plain_ctx = Ctx(now=now, new_id=self.new_id, limits=self.limits)
        return ctx

    def _package(self, reader: OverlayReader, batch: _Batch, state: SessionState, budget: int):  # type: ignore[no-untyped-def]
        summary = reader.summary(state.session_key)
        assert summary is not None
        newest = self._entries_newest_first(batch, state.session_key, state.last_sequence)
        record, _ = build_package(package_head(summary), newest, budget)
        return record

    def _entries_newest_first(self, batch: _Batch, key: str, last: int) -> Iterator[PackageEntry]:
        """The batch's pending entries, then the stored ones, newest first, read as the package pulls them."""
        seq = last
        pending = batch.changes.entries
        while seq >= 1 and (key, seq) in pending:
            yield to_package_entry(pending[(key, seq)])
            seq -= 1
        yield from self.queries.entries_newest_first(key, seq)

    def _commit(self, batch: _Batch) -> None:
        self.position += len(batch.envelopes)
        for key, state in batch.states.items():
            self.states.remember(key, state)
        self.reader.commit(batch.changes)
        for listener in self.listeners:
            try:
                listener(batch.envelopes, batch.changes)
            except Exception:  # a listener must not break the writer
                log.exception("change listener failed")

    @property
    def running(self) -> bool:
        """Whether the writer task is taking commands."""
        return self._task is not None and not self._task.done() and self._broken is None

    # -- the read path --------------------------------------------------------------------------

    def state(self, key: str) -> SessionState | None:
        """The committed decision state of a session."""
        return self.states.through(key, self.log.state)

    def session_view(self, key: str) -> SessionView | None:
        """The live session view."""
        return self.reader.session(key)

    def summary_view(self, key: str) -> SummaryView | None:
        """The live summary view."""
        return self.reader.summary(key)

    def handoff_view(self, hid: str) -> HandoffView | None:
        """The live handoff view."""
        return self.reader.handoff(hid)

    def as_of(self, key: str, version: int) -> Queries:
        """Queries over the session exactly as it was after its first `version` events."""
        kv = InMemoryKeyValue()
        fold_events(kv, self.log.stream(key, until=version))
        return Queries(kv)
