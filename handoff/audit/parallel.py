"""`handoff replay` on several cores: shares of the log are folded side by side.

Every view belongs to one session, so any set of whole sessions is a self-contained log whose views
no other set writes. In Kafka mode a share is a group of partitions of the events topic (a session
lives in one partition); in the embedded store, whose log is kept in session order, a run of
sessions. The shares are of about equal size; this process folds the first straight into the target
while child processes fold the others into scratch stores and write them out as SST files, which
RocksDB then ingests into the target (another kind of store gets them copied). The target ends up
with exactly the views a one-process replay writes (the tests compare the bytes).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from handoff.audit.progress import Progress
from handoff.audit.replay import ReplayResult, finished, replay, require_empty
from handoff.audit.report import Report
from handoff.audit.verify import joined, verify, verify_range
from handoff.audit.views import ViewMerge
from handoff.kernel.codec import decode_envelope
from handoff.kernel.errors import HandoffError
from handoff.storage.datakeys import revealer
from handoff.storage.kv import KeyValue, RocksKeyValue
from handoff.storage.log import EventLog, event_prefix
from projections.replay import fold_events
from streams.logreader import LogReader
from streams.security import PLAINTEXT, KafkaSecurity

PARALLEL_FROM = 20_000
"""Below this many records, one process is done before others would have started."""

_COPY_BATCH = 10_000
EVENTS, EVENTS_END = b"E:", b"E;"  # the embedded log's keys: from the first to just past the last


def default_jobs() -> int:
    """Processes a replay uses by default: one per core, at most four."""
    return max(1, min(os.cpu_count() or 1, 4))


def split(ends: dict[int, int], groups: int) -> list[list[int]]:
    """The partitions in at most `groups` groups of about equal size (the largest first, into the lightest)."""
    parts: list[list[int]] = [[] for _ in range(max(1, groups))]
    sizes = [0] * len(parts)
    for p in sorted(ends, key=lambda p: (-ends[p], p)):
        i = sizes.index(min(sizes))
        parts[i].append(p)
        sizes[i] += ends[p]
    return [sorted(g) for g in parts if g]


def fold_partitions(
    bootstrap: str, prefix: str, parts: list[int], ends: dict[int, int], target: KeyValue,
    on_batch: Callable[[int], None] | None = None, accel: bool = True, security: KafkaSecurity = PLAINTEXT,
    keys: Mapping[str, bytes] | None = None,
) -> int:  # fmt: skip
    """Fold the events of `parts`, each in offset order up to its end, into `target`; the count.

    `keys`: the data keys (sessionKey → key) that show live sessions in the clear; None: read ``handoff.keys``.
    """
    with LogReader(bootstrap, prefix, accel=accel, security=security) as reader:
        shown = revealer(keys if keys is not None else reader.data_keys())
        values = (value for p in parts for value in reader.values(p, ends[p]))
        return fold_events(target, (shown(decode_envelope(v)) for v in values), on_batch=on_batch)


def replay_in_parallel(
    bootstrap: str, prefix: str, ends: dict[int, int], target: KeyValue, *, jobs: int,
    scratch: Path | None = None, quiet: bool = False, accel: bool = True, security: KafkaSecurity = PLAINTEXT,
    keys: Mapping[str, bytes] | None = None,
) -> ReplayResult:  # fmt: skip
    """Fold partitions `ends` (partition -> end offset) into the empty `target` with `jobs` processes.

    `keys` (sessionKey → data key) show live sessions' events in the clear; None: each process reads
    them from ``handoff.keys``.
    """
    keys = dict(keys) if keys is not None else None
    shares = [
        PartitionShare(bootstrap, prefix, parts, {p: ends[p] for p in parts}, accel, security, keys)
        for parts in split(ends, jobs)
    ]
    return fold_shares(shares, target, total=sum(ends.values()), scratch=scratch, quiet=quiet)


def replay_store(
    source: KeyValue, target: KeyValue, *, jobs: int = 1, until_version: int | None = None,
    until_time: str | None = None, scratch: Path | None = None, quiet: bool = False,
) -> ReplayResult:  # fmt: skip
    """`replay` of an embedded store, with `jobs` processes when the whole of a large RocksDB log is replayed."""
    whole = until_version is None and until_time is None
    if whole and jobs > 1 and isinstance(source, RocksKeyValue) and EventLog(source).count() >= PARALLEL_FROM:
        return replay_store_in_parallel(source, target, jobs=jobs, scratch=scratch, quiet=quiet)
    return replay(source, target, until_version=until_version, until_time=until_time, quiet=quiet)


def replay_store_in_parallel(
    source: RocksKeyValue, target: KeyValue, *, jobs: int, scratch: Path | None = None, quiet: bool = False
) -> ReplayResult:
    """Fold the embedded log of `source` into the empty `target` with up to `jobs` processes.

    The store's log is in session order, so each process takes a run of whole sessions (about the
    same number of events each) and reads it from its own read-only handle on the store.
    """
    return fold_shares(store_shares(source, jobs), target, total=EventLog(source).count(), scratch=scratch, quiet=quiet)


class PartitionShare:
    """Partitions of the events topic, each read in offset order up to its end."""

    def __init__(
        self, bootstrap: str, prefix: str, parts: list[int], ends: dict[int, int], accel: bool,
        security: KafkaSecurity, keys: dict[str, bytes] | None,
    ) -> None:  # fmt: skip
        self.args = (bootstrap, prefix, parts, ends)
        self.accel, self.security, self.keys = accel, security, keys

    def fold(self, target: KeyValue, on_batch: Callable[[int], None] | None) -> int:
        """Fold this share into `target`; the count."""
        bootstrap, prefix, parts, ends = self.args
        return fold_partitions(
            bootstrap, prefix, parts, ends, target, on_batch=on_batch, accel=self.accel, security=self.security,
            keys=self.keys,
        )  # fmt: skip


class StoreShare:
    """The events of the sessions whose log keys lie from `start` up to `end`, in an embedded store."""

    def __init__(self, path: str, start: bytes, end: bytes) -> None:
        self.path, self.start, self.end = path, start, end

    def fold(self, target: KeyValue, on_batch: Callable[[int], None] | None) -> int:
        """Fold this share into `target`; the count."""
        source = RocksKeyValue(self.path, read_only=True)
        try:
            shown = EventLog(source).keys.reveal
            values = source.values_between(self.start, self.end)
            return fold_events(target, (shown(decode_envelope(v)) for v in values), on_batch=on_batch)
        finally:
            source.close()


def store_shares(source: RocksKeyValue, jobs: int) -> list[StoreShare]:
    """Runs of whole sessions, in key order, of about equal numbers of events (the sessions' versions)."""
    log = EventLog(source)
    sizes = [(key, state.version) for key in log.session_keys() if (state := log.state(key)) is not None]
    goal = sum(v for _, v in sizes) / max(1, jobs)
    starts: list[bytes] = [EVENTS]  # the first run also takes anything sorting before its first session
    taken = 0
    for key, version in sizes:
        if taken >= goal * len(starts) and len(starts) < jobs:
            starts.append(event_prefix(key))
        taken += version
    ends = [*starts[1:], EVENTS_END]
    return [StoreShare(source.path, a, b) for a, b in zip(starts, ends, strict=True)]


Share = PartitionShare | StoreShare


def fold_shares(
    shares: Sequence[Share], target: KeyValue, *, total: int, scratch: Path | None = None, quiet: bool = False
) -> ReplayResult:
    """Fold the first share in this process and every other in a child process, then gather their views."""
    require_empty(target)
    mine, *theirs = shares
    progress = Progress("replay", total=total, quiet=quiet)
    with _Children(_child, theirs, "replay", scratch, progress) as children:
        count = mine.fold(target, children.advance)
        count += sum(children.wait())
        if isinstance(target, RocksKeyValue):  # the children's views as files RocksDB links in
            target.ingest(children.ssts())
        else:
            for i in range(len(theirs)):
                _copy(children.path(i), target)
    return finished(target, count, progress)


def _child(
    i: int, share: Share, path: str, counted: Synchronized[int], results: multiprocessing.Queue[tuple[int, int | str]]
) -> None:
    """A child process: fold `share` into a scratch store at `path`, and write it out as ``path.sst``.

    It puts (i, events folded) or (i, why it failed) on `results`.
    """
    store = RocksKeyValue(path, bulk=True)

    def on_batch(n: int) -> None:
        with counted.get_lock():
            counted.value += n

    try:
        outcome: int | str = share.fold(store, on_batch)
        store.export_sst(f"{path}.sst")  # sorted here, in parallel: the parent only links the file in
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        store.close()
    results.put((i, outcome))


def verify_store(
    kv: KeyValue, *, jobs: int = 1, session: str | None = None, scratch: Path | None = None, quiet: bool = False
) -> Report:
    """`verify` of an embedded store, with `jobs` processes when the whole of a large RocksDB log is checked."""
    if session is None and jobs > 1 and isinstance(kv, RocksKeyValue) and EventLog(kv).count() >= PARALLEL_FROM:
        report = verify_store_in_parallel(kv, jobs=jobs, scratch=scratch, quiet=quiet)
        if report is not None:
            return report
    return verify(kv, session=session, scratch=scratch, quiet=quiet)


def verify_store_in_parallel(
    kv: RocksKeyValue, *, jobs: int, scratch: Path | None = None, quiet: bool = False
) -> Report | None:
    """`verify` with one process per run of sessions; None if a run's entries came out of key order.

    Each process checks its sessions' chains, folds them afresh and merge-compares their context entries
    with the live ones (`verify_range`); this one then joins the reports in key order and compares the
    other views, all shares' folded into one store, with the live ones (`joined`). Entries out of key
    order (only a damaged log has them) void a share's merge: the caller then verifies in one process,
    which knows how to fold such a log whole.
    """
    shares = store_shares(kv, jobs)
    progress = Progress("verify", total=EventLog(kv).count(), quiet=quiet)
    with _Children(_verify_child, shares[1:], "verify", scratch, progress) as children:
        fresh = RocksKeyValue(str(children.workdir / "views"), bulk=True)
        mine = verify_range(kv, shares[0].start, shares[0].end, fresh, _Ticking(progress, children.advance))
        outcomes = children.wait()  # (report, difference, live sum, fresh sum, ordered) each
        if not (mine[1].ordered and all(ordered for *_, ordered in outcomes)):
            fresh.discard()
            return None
        theirs = [(part, ViewMerge.finished(difference, live, new)) for part, difference, live, new, _ in outcomes]
        fresh.ingest(children.ssts())
        report = Report()
        joined([mine, *theirs], kv, fresh, report)
        fresh.discard()
    progress.done()
    report.seconds = progress.elapsed()
    return report


class _Children:
    """Child processes, one per share, each running `target(i, share, path, counted, results)`.

    A context manager: entering makes a scratch directory and starts them; leaving stops any still
    running and removes the directory. Child i works at `path(i)`, adds what it has done to its
    `counted` value, and puts (i, outcome) or (i, why it failed) on `results`; `wait` gathers the
    outcomes, and `ssts` lists the SST files the children wrote out.
    """

    def __init__(
        self, target: Callable[..., None], shares: Sequence[Share], name: str, scratch: Path | None, progress: Progress
    ) -> None:
        self.target, self.shares, self.name, self.scratch, self.progress = target, shares, name, scratch, progress
        self.workdir = Path()
        self.processes: list[Any] = []

    def __enter__(self) -> _Children:
        ctx = multiprocessing.get_context("spawn")  # no fork: this process has RocksDB's threads running
        self.workdir = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=self.scratch))
        self.counted: list[Synchronized[int]] = [ctx.Value("q", 0) for _ in self.shares]
        self.seen = [0] * len(self.shares)
        self.results: multiprocessing.Queue[tuple[int, Any]] = ctx.Queue()
        self.processes = [
            ctx.Process(
                target=self.target,
                args=(i, share, self.path(i), self.counted[i], self.results),
                name=f"handoff-{self.name}-{i}",
                daemon=True,
            )  # fmt: skip
            for i, share in enumerate(self.shares)
        ]
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *_: object) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
            process.join()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def path(self, i: int) -> str:
        """Where child i keeps its scratch store (and writes ``path.sst``)."""
        return str(self.workdir / f"p{i}")

    def advance(self, n: int = 0) -> None:
        """Count `n` records done in this process, and what the children counted since the last call."""
        for i, value in enumerate(self.counted):
            now = value.value
            n, self.seen[i] = n + now - self.seen[i], now
        self.progress.advance(n)

    def wait(self) -> list[Any]:
        """The children's outcomes in their order, once all have finished (see `_wait`)."""
        return _wait(self.processes, self.results, self.advance)

    def ssts(self) -> list[str]:
        """The SST files the children wrote out."""
        return [sst for i in range(len(self.shares)) if Path(sst := f"{self.path(i)}.sst").exists()]


class _Ticking:
    """This process's progress, taking in what the children counted every thousand records."""

    def __init__(self, progress: Progress, tick: Callable[[], None]) -> None:
        self.progress, self.tick, self.since = progress, tick, 0

    def advance(self, n: int = 1) -> None:
        """Count `n` records here."""
        self.progress.advance(n)
        self.since += n
        if self.since >= 1000:
            self.since = 0
            self.tick()


class _Shared:
    """A child's progress: its count, added to a value the parent reads, every thousand records."""

    def __init__(self, counted: Synchronized[int]) -> None:
        self.counted, self.since = counted, 0

    def advance(self, n: int = 1) -> None:
        """Count `n` records."""
        self.since += n
        if self.since >= 1000:
            with self.counted.get_lock():
                self.counted.value += self.since
            self.since = 0


def _verify_child(
    i: int, share: StoreShare, path: str, counted: Synchronized[int], results: multiprocessing.Queue[tuple[int, Any]]
) -> None:
    """A child process: `verify_range` of `share`, its other views written out as ``path.sst``."""
    kv = RocksKeyValue(share.path, read_only=True)
    fresh = RocksKeyValue(path, bulk=True)
    try:
        report, merge = verify_range(kv, share.start, share.end, fresh, _Shared(counted))
        fresh.export_sst(f"{path}.sst")
        outcome: Any = (report, merge.difference, merge.live_sum, merge.fresh_sum, merge.ordered)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        fresh.close()
        kv.close()
    results.put((i, outcome))


def _wait(children: list[Any], results: multiprocessing.Queue[tuple[int, Any]], tick: Callable[[], None]) -> list[Any]:
    """The children's outcomes, in their order, once all have finished; HandoffError naming the first that failed.

    A child puts (i, outcome) on `results`, or (i, a str saying why it failed).
    """
    outcomes: dict[int, Any] = {}
    while len(outcomes) < len(children):
        try:
            i, outcome = results.get(timeout=0.25)
        except queue.Empty:
            tick()
            gone = [c for j, c in enumerate(children) if j not in outcomes and not c.is_alive()]
            if gone and results.empty():
                raise HandoffError(f"process {gone[0].name} died (exit code {gone[0].exitcode})") from None
            continue
        if isinstance(outcome, str):
            raise HandoffError(f"process {children[i].name} failed: {outcome}")
        outcomes[i] = outcome
    return [outcomes[i] for i in range(len(children))]


def _copy(path: str, target: KeyValue) -> None:
    """Every entry of the scratch store at `path` into `target`, in batches."""
    source = RocksKeyValue(path, read_only=True)
    try:
        batch: list[tuple[bytes, bytes | None]] = []
        for item in source.scan(b""):
            batch.append(item)
            if len(batch) >= _COPY_BATCH:
                target.write(batch)
                batch = []
        target.write(batch)
    finally:
        source.close()
