"""`handoff verify`: every stream gap-free and hash-chained, every event decodable, every view a true fold.

One pass over the log checks each session's stream (versions 1..n, ``prevHash`` links, canonical bytes
and hashes) and folds it afresh. The fold's context entries are merge-compared with the live ones as
they come (the log and the entries share their order: session by session); the other views go to a
scratch store that is merge-compared with the live views after. The first view that differs is
named. Memory stays flat: the scratch store is RocksDB and nothing else grows with the log.

The operations log (job and configuration changes) is checked too, as its own chain (`handoff.audit.opslog`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from msgspec.structs import replace

from handoff.audit.opslog import check_store
from handoff.audit.progress import Counter, Progress
from handoff.audit.report import Problem, Report
from handoff.audit.views import Alike, ViewMerge, merged
from handoff.kernel.codec import decode_envelope, verify_record
from handoff.kernel.errors import CodecError
from handoff.kernel.events import GENESIS_HASH, Envelope, SessionErased
from handoff.storage import keys
from handoff.storage.digest import exact
from handoff.storage.keys import VIEW_PREFIXES
from handoff.storage.kv import KeyValue, RocksKeyValue, Write
from handoff.storage.log import EventLog, event_prefix, event_records
from projections.replay import fold_events
from projections.viewstore import decode_entry, reads_from_log

StoredRecord = tuple[str, int | None, bytes, str | None]
"""(sessionKey, version, record bytes, location) as a log stores it.

The session and version are where the log files the record (the embedded store's key; a Kafka
record's key and, if it decodes that far, its own version; None when unknown); the location names
the record for a human (``partition 3 offset 17``), or is None.
"""


class _ChainCheck:
    """Checks one session's records in order and yields the decoded envelopes that hold."""

    __slots__ = ("session", "report", "expected", "prev_hash")

    def __init__(self, session: str, report: Report) -> None:
        self.session = session
        self.report = report
        self.expected = 1
        self.prev_hash = GENESIS_HASH

    def _fail(self, version: int | None, what: str, at: str | None) -> None:
        self.report.problems.append(Problem(self.session, version, what, at))

    def feed(self, version: int | None, record: bytes, at: str | None = None) -> Envelope | None:
        if version is None:  # the log could not say which version this is: it stands where the next one should
            version = self.expected
        if version < self.expected:  # a second record of a version already seen (only an appending log has these)
            _, why = verify_record(record)
            damage = f"; {why}" if why else ""
            self._fail(version, f"event is duplicated (it follows version {self.expected - 1}){damage}", at)
            return None
        if version > self.expected:
            self._fail(self.expected, f"event is missing (the stream goes from {self.expected - 1} to {version})", at)
            self.expected = version
        self.expected += 1
        env, why = verify_record(record)
        if env is None:
            self._fail(version, str(why), at)
            try:  # keep following the chain from what the record claims, to report one break once
                self.prev_hash = decode_envelope(record).hash
            except CodecError:
                pass
            return None
        if env.session_key != self.session or env.version != version:
            self._fail(version, f"record stored here says session {env.session_key!r} version {env.version}", at)
        elif env.prev_hash != self.prev_hash:
            self._fail(version, "prevHash does not link to the previous event's hash (reordered or replaced)", at)
        self.prev_hash = env.hash
        return env


StreamEnd = Callable[[str, int], None]
"""Called with (sessionKey, last version seen) when a session's stream has been read to its end."""


def checked_stream(
    records: Iterable[StoredRecord],
    report: Report,
    progress: Counter,
    *,
    grouped: bool,
    on_end: StreamEnd | None = None,
) -> Iterator[Envelope]:
    """Check every session's hash chain in `records`; yield the envelopes that hold, in the order read.

    The records of one session must come in the log's order; sessions may interleave (a Kafka
    partition) unless `grouped` says each session's records are contiguous (the embedded store's
    key order), which lets a finished session's check be dropped: memory stays flat.
    """
    checks: dict[str, _ChainCheck] = {}
    for key, version, record, at in records:
        check = checks.get(key)
        if check is None:
            if grouped:
                _end(checks, on_end)
            check = checks[key] = _ChainCheck(key, report)
            report.sessions += 1
        report.events += 1
        progress.advance()
        env = check.feed(version, record, at)
        if env is not None:
            yield env
    _end(checks, on_end)


def _end(checks: dict[str, _ChainCheck], on_end: StreamEnd | None) -> None:
    if on_end is not None:
        for key, check in checks.items():
            on_end(key, check.expected - 1)
    checks.clear()


def _state_matcher(log: EventLog, report: Report) -> StreamEnd:
    """The embedded store's decision state must end where the stream ends (a deleted last event)."""

    def on_end(key: str, last: int) -> None:
        state = log.state(key)
        if state is not None and state.version != last:
            report.problems.append(
                Problem(key, last + 1, f"stream ends at version {last} but the session state is at {state.version}")
            )

    return on_end


def session_prefixes(session: str) -> tuple[bytes, ...]:
    """The selectors of one session's own views: its context entries, and exactly its session view and summary.

    The session view and summary are single keys: as prefixes, ``S:k`` would also take in session ``k1``'s.
    """
    return (keys.context_prefix(session), exact(keys.session_key(session)), exact(keys.summary_key(session)))


def noting_erasures(
    envelopes: Iterable[Envelope], report: Report, shown: Callable[[Envelope], Envelope]
) -> Iterator[Envelope]:
    """Each envelope as `shown` (in the clear while its session's key lives), noting each session erased."""
    for env in envelopes:
        if type(env.event) is SessionErased:
            report.erased.append(env.session_key)
        yield shown(env)


def content_in_view(log: EventLog) -> Alike:
    """Accepts a live entry view that holds its content where a fresh fold keeps it in the log.

    Stores written before an entry's content was stored once (`projections.viewstore`) hold a keyed
    entry's content in its view. Such a view is as good as the fresh one if it is the fresh one with
    the content and metadata the log holds, opened with the session's key; any other difference,
    a changed content included, is still one.
    """

    def alike(key: bytes, live: bytes, fresh: bytes) -> bool:
        if not key.startswith(b"C:"):
            return False
        old, new = decode_entry(live), decode_entry(fresh)
        if reads_from_log(old) or not reads_from_log(new) or replace(old, content="", metadata={}) != new:
            return False
        (fields,) = log.entries_fields(key[2:].partition(b"\x00")[0].decode(), [new.version])
        return fields == (old.content, old.metadata)

    return alike


def verify(kv: KeyValue, *, session: str | None = None, scratch: Path | None = None, quiet: bool = False) -> Report:
    """Verify the log and the views in `kv`; `scratch` is where the fresh fold is built."""
    log = EventLog(kv)
    report = Report()
    if session is not None and log.state(session) is None and next(kv.scan(event_prefix(session)), None) is None:
        report.problems.append(Problem(session, None, "no such session in this store"))
        return report
    progress = Progress("verify", total=None if session else log.count(), quiet=quiet)
    prefixes = VIEW_PREFIXES if session is None else session_prefixes(session)
    entries_prefix, others = prefixes[0], prefixes[1:]  # context entries sort first in either case

    def stream(into: Report, shown: Progress) -> Iterator[Envelope]:
        records = ((k, v, r, None) for k, v, r in log.all_records(session))
        checked = checked_stream(records, into, shown, grouped=True, on_end=_state_matcher(log, into))
        return noting_erasures(checked, into, log.keys.reveal)  # the views hold live sessions in the clear

    workdir = Path(tempfile.mkdtemp(prefix=".verify-", dir=scratch))
    try:
        fresh = RocksKeyValue(str(workdir / "views"), bulk=True)
        entries = ViewMerge(kv.scan(entries_prefix), content_in_view(log))
        fold_events(_EntriesAside(fresh, entries, entries_prefix), stream(report, progress))
        if session is None:
            _check_positions(log, report)
        if entries.ordered:
            views = entries.finish().result(merged(kv, fresh, others))
        else:  # entries came out of key order (only a damaged log does that): fold it all into the store
            fresh.discard()
            fresh = RocksKeyValue(str(workdir / "all-views"), bulk=True)
            fold_events(fresh, stream(Report(), Progress("verify", quiet=True)))
            views = merged(kv, fresh, prefixes, content_in_view(log)).result()
        if report.ok and views.difference is not None:
            diff = views.difference
            report.problems.append(Problem(diff.session, diff.version, diff.what))
        report.live_digest, report.fresh_digest = views.live_digest, views.fresh_digest
        fresh.discard()
        if session is None:  # the operations log: its own chain, beside the sessions' (after: it explains no view)
            check_store(kv, report)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    progress.done()
    report.seconds = progress.elapsed()
    return report


def verify_range(
    kv: RocksKeyValue, start: bytes, end: bytes, fresh: KeyValue, progress: Counter
) -> tuple[Report, ViewMerge]:
    """Check the sessions whose log keys lie from `start` to `end` and fold them into `fresh`.

    One share of a verification by several processes (`handoff.audit.parallel`): the chains of these
    sessions, and their context entries merge-compared with the live entries of the same sessions (the
    ``C:`` keys of the same range); their other views are left in `fresh` for the caller to compare.
    """
    log = EventLog(kv)
    report = Report()
    entries_prefix = VIEW_PREFIXES[0]  # context entries
    entries = ViewMerge(kv.items_between(b"C" + start[1:], b"C" + end[1:]), content_in_view(log))  # E:.. to C:..

    records = ((k, v, r, None) for k, v, r in event_records(kv.items_between(start, end)))
    checked = checked_stream(records, report, progress, grouped=True, on_end=_state_matcher(log, report))
    fold_events(_EntriesAside(fresh, entries, entries_prefix), noting_erasures(checked, report, log.keys.reveal))
    return report, entries.finish()


def joined(shares: list[tuple[Report, ViewMerge]], kv: KeyValue, fresh: KeyValue, report: Report) -> None:
    """Join the reports and entry merges of the shares of a verification, in key order, into `report`.

    `fresh` holds every share's other views; they are compared with the live ones here.
    """
    for part, _ in shares:
        report.sessions += part.sessions
        report.events += part.events
        report.problems += part.problems
        report.erased += part.erased
    _check_positions(EventLog(kv), report)
    first, *rest = (merge for _, merge in shares)
    views = first.result(*rest, merged(kv, fresh, VIEW_PREFIXES[1:]))
    if report.ok and views.difference is not None:
        diff = views.difference
        report.problems.append(Problem(diff.session, diff.version, diff.what))
    report.live_digest, report.fresh_digest = views.live_digest, views.fresh_digest
    check_store(kv, report)


class _EntriesAside:
    """The fresh fold's store, which keeps context entries out of the scratch store.

    Entries (most of the views) go straight into a merge with the live ones as the fold writes them,
    in key order, instead of into a store to be read back. Everything else goes to the scratch store,
    and reads come from it (a fold never reads entries).
    """

    def __init__(self, scratch: KeyValue, entries: ViewMerge, prefix: bytes) -> None:
        self.scratch = scratch
        self.entries = entries
        self.prefix = prefix  # the entries' prefix, as the live side of the merge scans it

    def get(self, key: bytes) -> bytes | None:
        return self.scratch.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self.scratch.get_many(keys)

    def scan(self, prefix: bytes, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self.scratch.scan(prefix, after)

    def values(self, prefix: bytes) -> Iterator[bytes]:
        return self.scratch.values(prefix)

    def write(self, writes: Iterable[Write], sync: bool = False) -> None:
        rest = []
        push, prefix = self.entries.push, self.prefix
        for key, value in writes:
            if value is not None and key.startswith(prefix):
                push(key, value)
            else:
                rest.append((key, value))
        self.scratch.write(rest, sync)


def _check_positions(log: EventLog, report: Report) -> None:
    """The global order must count every event exactly once (a deleted event leaves it one short)."""
    seen = sum(1 for _ in log.kv.scan(b"G:"))
    if seen != report.events:
        report.problems.append(
            Problem(None, None, f"the global order has {seen} positions but {report.events} events are stored")
        )
