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

Deciding without the writer task (the Kafka decider, which commits elsewhere first):
`decide_batch(commands)` decides a batch against the committed state and returns each command's
result with the `Batch`: its events, their encoded records and the store writes that commit them,
nothing written yet. The caller makes `batch.writes` durable in the engine's store (adding writes of
its own to the same WriteBatch if it likes), then calls `apply_committed(batch)` so the engine takes
the batch in: its log position, its caches and its change listeners. A batch never applied was
never decided: the next `decide_batch` starts again from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping

import msgspec

from handoff.engine import erasure
from handoff.engine.batch import Batch, CachedReader, Lru
from handoff.engine.ids import Clock, IdGenerator
from handoff.engine.logsync import LogSyncThread
from handoff.engine.sweeper import Sweeper
from handoff.engine.timings import Stopwatch, StoreTimings
from handoff.kernel.codec import decode_envelope
from handoff.kernel.commands import Command, EraseSession, RegisterSession, RequestHandoff
from handoff.kernel.decide import Ctx, execute_all
from handoff.kernel.erasure import ERASE_AFTER_DAYS, reveal
from handoff.kernel.errors import HandoffError, Unavailable
from handoff.kernel.events import Envelope, PackageRecord
from handoff.kernel.package import PackageEntry, build_package
from handoff.kernel.receipt import check_retry, command_digest, receipt_of
from handoff.kernel.state import SessionState
from handoff.kernel.types import DEFAULT_TOKEN_BUDGET, Limits
from handoff.ports import Outcome
from handoff.storage import datakeys as DK
from handoff.storage import log as L
from handoff.storage.due import entry_write as due_entry_write
from handoff.storage.keys import context_prefix
from handoff.storage.kv import InMemoryKeyValue, KeyValue, Write
from projections.folds import erased_entry, erased_handoff
from projections.projector import Changes, OverlayReader, RunFolder
from projections.queries import Queries, to_package_entry
from projections.replay import fold_events
from projections.summary import package_head
from projections.views import HandoffView, SessionView, SummaryView
from projections.viewstore import changes_to_writes, decode_entry

log = logging.getLogger(__name__)

Listener = Callable[[list[Envelope], Changes], None]


RECOVERY_FIRST_DELAY = 0.5  # seconds before the first attempt to write again after a failure; doubles to:
RECOVERY_MAX_DELAY = 5.0
PROBE_KEY = b"~probe"  # outside every key family: written and deleted to test that the store takes writes


def _timed(sync_log: Callable[[], None], hook: Callable[[float], None]) -> Callable[[], None]:
    """`sync_log`, its duration handed to `hook` (in the log-sync thread, where it runs)."""

    def sync() -> None:
        with Stopwatch(hook):
            sync_log()

    return sync


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
        timings: StoreTimings | None = None,
        sweep_every: float | None = None,
        encrypt: bool = True,
    ) -> None:
        self.kv = kv
        self.encrypt = encrypt  # give new sessions a data key (CONTRACT §8 Erasure); off: they are written in the clear
        self.timings = timings or StoreTimings()
        self.log = L.EventLog(kv)
        self.queries = Queries(kv, self.log)
        self.limits = limits or Limits()
        self.sync = sync
        self.max_batch = max_batch
        self.clock = clock or Clock()
        self.new_id = new_id or IdGenerator()
        self.reader = CachedReader(kv, cache_size)
        self.states = Lru(cache_size)
        self.datakeys = self.log.keys  # one cache: the writer's ciphers are the ones the log's reads use
        self.position = self.log.position()
        self.listeners: list[Listener] = []
        self.sync_log = sync_log
        self._plain_ctx: Ctx | None = None
        self._queue: asyncio.Queue[tuple[Command, asyncio.Future[Outcome]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._syncing: asyncio.Future[None] | None = None  # set while a written batch is not yet durable
        self._broken: str | None = None  # why writes are refused after a failed log sync
        self._log_sync: LogSyncThread | None = None
        self._recovery: asyncio.Task[None] | None = None
        self.sweeper = Sweeper(kv, self.state, self.submit, self.clock, every=sweep_every or 0.0)
        self._sweep_every = sweep_every  # None: no expiry sweeps (Kafka partitions run their own)
        self._sweeping: asyncio.Task[None] | None = None

    # -- the write path -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer task."""
        self._queue = asyncio.Queue()
        if self.sync_log is not None and self.sync:
            self._log_sync = LogSyncThread(_timed(self.sync_log, self.timings.sync))
        self._task = asyncio.create_task(self._writer(), name="handoff-writer")
        if self._sweep_every is not None:
            self._sweeping = asyncio.create_task(self.sweeper.run(), name="handoff-expiry-sweeper")

    async def stop(self) -> None:
        """Finish the queued commands, then stop the writer."""
        if self._task is None or self._queue is None:
            return
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        if self._recovery is not None:
            self._recovery.cancel()
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
                        self.apply_committed(batch)
                    if batch.erased:
                        await asyncio.to_thread(self.purge_files)
            except Exception as exc:
                log.exception("batch of %d commands failed to commit", len(items))
                failure = Unavailable(f"the store could not commit the write: {exc}")
                results = [failure] * len(items)
                self._refuse_writes_until_recovered(f"the store could not commit a write ({exc})")
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
            with Stopwatch(self.timings.write):
                self.kv.write(writes, False)  # a memtable insert: a thread hop would cost more than it saves
            return
        if self._log_sync is None:
            with Stopwatch(self.timings.write):
                await asyncio.to_thread(self.kv.write, writes, True)
            return
        with Stopwatch(self.timings.write):
            self.kv.write(writes, False)
        syncing = self._syncing = asyncio.get_running_loop().create_future()
        try:
            await self._log_sync.sync()
        except Exception as exc:
            log.critical("log sync failed; refusing writes until the store recovers: %s", exc)
            self._refuse_writes_until_recovered(f"the log could not be synced to disk ({exc})")
            raise
        finally:
            self._syncing = None
            syncing.set_result(None)

    def _refuse_writes_until_recovered(self, why: str) -> None:
        """Answer UNAVAILABLE (and /readyz 503) from now on, and try to recover in the background.

        A full disk is the usual cause: RocksDB then stops taking writes until it is opened again, so
        recovery reopens the store once a probe write can be made durable, and reloads what is cached.
        """
        self._broken = f"{why}; retrying until the store takes writes again"
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="handoff-store-recovery")

    async def _recover(self) -> None:
        delay = RECOVERY_FIRST_DELAY
        while self._broken is not None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECOVERY_MAX_DELAY)
            try:
                await asyncio.to_thread(self._reopen_and_probe)
            except Exception as exc:  # noqa: BLE001 - still failing: the disk is still full, or the store closed
                log.warning("the store does not take writes yet: %s", exc)
                continue
            self.states.clear()
            self.reader = CachedReader(self.kv, self.states.size)
            self.position = self.log.position()
            self._broken = None
            log.warning("the store takes writes again; writes resumed")

    def _reopen_and_probe(self) -> None:
        reopen = getattr(self.kv, "reopen", None)
        if reopen is not None:
            reopen()
        for value in (b"probe", None):  # made durable the way the writer makes a batch durable
            self.kv.write([(PROBE_KEY, value)], self.sync and self.sync_log is None)
            if self.sync and self.sync_log is not None:
                self.sync_log()

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
            with Stopwatch(self.timings.write):
                self.kv.write(batch.writes, self.sync)
            self.apply_committed(batch)
            if batch.erased:
                self.purge_files()
        return results

    async def erase_due(self, now: str, erase_after_days: Mapping[str, int] = ERASE_AFTER_DAYS) -> dict[str, int]:
        """Erase every session whose retention (`erase_after_days` per policy) ran out at `now`: the `retention` job."""
        return await erasure.erase_due(self.kv, self.state, self.submit, now, erase_after_days)

    def purge_files(self) -> None:
        """Rewrite the store's files so destroyed keys and erased views are gone from the disk too.

        The erasure is committed before this runs: a failure here is logged, not reported as a failed
        write (RocksDB's own compactions drop the old values later).
        """
        compact = getattr(self.kv, "compact_all", None)
        if compact is None:
            return
        try:
            compact()
        except Exception:  # the write is durable; only the rewrite of old files failed
            log.exception("compacting the store after an erasure failed; old files may hold erased data a while")

    def decide_batch(self, commands: list[Command]) -> tuple[list[Outcome | HandoffError], Batch]:
        """Decide each command against the state the previous ones left; collect the batch's writes."""
        batch = Batch()
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

    def _decide_one(self, command: Command, batch: Batch) -> Outcome:
        key = command.session_key
        state = batch.states.get(key) or self.state(key)
        ikey = command.idempotency_key
        if ikey is not None:
            first = batch.receipts.get((key, ikey)) or self.log.receipt(key, ikey)
            if first is not None:
                check_retry(first, command)
                record = batch.records.get((key, first.version)) or self.log.record(key, first.version)
                assert record is not None, "a receipt always points at a stored event"
                env = decode_envelope(record)
                env = msgspec.structs.replace(env, event=reveal(env.event, self._cipher(key, state, batch)))
                return Outcome(env, first, replayed=True)
        package = None
        if isinstance(command, RequestHandoff) and state is not None and state.status == "active":
            batch.folder.flush()  # the package reads the views as of this command
            package = self._package(batch.folder.reader, batch, state, command.token_budget or DEFAULT_TOKEN_BUDGET)
        fresh = None
        if self.encrypt and isinstance(command, RegisterSession) and (state is None or state.version == 0):
            fresh = DK.DataCipher.new()
        cipher = fresh or self._cipher(key, state, batch)
        new_state, sealed = execute_all(state, command, self._ctx(package), cipher)
        if fresh is not None:
            batch.ciphers[key] = fresh
            batch.writes.append(DK.create_write(key, fresh))
        for env, record in sealed:  # one, but for AppendContextBatch: then one per entry, all in this batch
            batch.folder.add(env)  # appends fold per session at the end of the batch
            due = due_entry_write(new_state, env)  # registrations and requests only (never batched): appends add none
            if due is not None:
                batch.writes.append(due)
            L.add_event_writes(batch.writes, self.position + len(batch.envelopes) + 1, key, env.version, record)
            batch.records[(key, env.version)] = record
            batch.envelopes.append(env)
        env = sealed[-1][0]
        if isinstance(command, EraseSession):
            self._erase_views(key, new_state, batch)
        receipt = receipt_of(new_state, env, command_digest(command)) if ikey is not None else None
        if receipt is not None:
            assert ikey is not None
            batch.receipts[(key, ikey)] = receipt
            batch.writes.append((L.receipt_key(key, ikey), L.encode_receipt(receipt)))
        batch.states[key] = new_state
        return Outcome(env, receipt, state=new_state, events=len(sealed))

    def _cipher(self, key: str, state: SessionState | None, batch: Batch) -> DK.DataCipher | None:
        """The session's cipher; None for a session from before erasure existed, or an erased one."""
        if state is None or not state.encrypted or state.erased:
            return batch.ciphers.get(key)
        return batch.ciphers.get(key) or self.datakeys.cipher(key)

    def _erase_views(self, key: str, state: SessionState, batch: Batch) -> None:
        """Destroy the session's key; rewrite its entries and handoffs to the erased form; drop its receipts.

        The session view and the summary were erased by the fold of SessionErased itself.
        """
        batch.folder.flush()
        changes = batch.changes
        for _, value in self.kv.scan(context_prefix(key)):
            entry = decode_entry(value)
            changes.entries[(key, entry.sequence_number)] = erased_entry(entry)
        for (k, seq), entry in list(changes.entries.items()):
            if k == key:
                changes.entries[(k, seq)] = erased_entry(entry)
        for hid in state.handoffs:
            view = batch.folder.reader.handoff(hid)
            if view is not None:
                changes.handoffs[hid] = erased_handoff(view)
        batch.writes.extend((k, None) for k, _ in self.kv.scan(L.receipt_key(key, "")))
        batch.writes.append(DK.destroy_write(key))
        batch.erased.append(key)

    def _ctx(self, package: PackageRecord | None) -> Ctx:
        """The decision context; without a package, one per clock tick is shared by the commands in it."""
        now = self.clock()
        if package is not None:
            return Ctx(now=now, new_id=self.new_id, limits=self.limits, package=package)
        ctx = self._plain_ctx
        if ctx is None or ctx.now != now:
            ctx = self._plain_ctx = Ctx(now=now, new_id=self.new_id, limits=self.limits)
        return ctx

    def _package(self, reader: OverlayReader, batch: Batch, state: SessionState, budget: int):  # type: ignore[no-untyped-def]
        summary = reader.summary(state.session_key)
        assert summary is not None
        newest = self._entries_newest_first(batch, state.session_key, state.last_sequence)
        record, _ = build_package(package_head(summary), newest, budget)
        return record

    def _entries_newest_first(self, batch: Batch, key: str, last: int) -> Iterator[PackageEntry]:
        """The batch's pending entries, then the stored ones, newest first, read as the package pulls them."""
        seq = last
        pending = batch.changes.entries
        while seq >= 1 and (key, seq) in pending:
            yield to_package_entry(pending[(key, seq)])
            seq -= 1
        yield from self.queries.entries_newest_first(key, seq)

    def apply_committed(self, batch: Batch) -> None:
        """Take in a batch from `decide_batch` whose writes are now in the store: position, caches, listeners."""
        self.position += len(batch.envelopes)
        for key, state in batch.states.items():
            self.states.remember(key, state)
        for key, cipher in batch.ciphers.items():
            self.datakeys.remember(key, cipher)
        for key in batch.erased:
            self.datakeys.forget(key)
        self.reader.commit(batch.changes)
        for listener in self.listeners:
            try:
                listener(batch.envelopes, batch.changes)
            except Exception:  # a listener must not break the writer
                log.exception("change listener failed")

    @property
    def write_refusal(self) -> str | None:
        """Why writes are refused until a restart (the log could not be synced), or None."""
        return self._broken

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
        return Queries(kv, self.log)  # entries read their content from this log
