"""`handoff verify`: every stream gap-free and hash-chained, every event decodable, every view a true fold.

One pass over the log checks each session's stream (versions 1..n, ``prevHash`` links, canonical bytes
and hashes) and folds it afresh into a scratch store; a merge-compare of that store with the live views
then names the first view that differs. Memory stays flat: both stores are RocksDB.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from handoff.audit.progress import Progress
from handoff.audit.views import VIEW_PREFIXES, digest, first_difference
from handoff.engine.log import EventLog, event_prefix
from handoff.kernel.codec import decode_envelope, verify_record
from handoff.kernel.errors import CodecError
from handoff.kernel.events import GENESIS_HASH, Envelope
from projections import keys
from projections.replay import fold_events
from projections.store import KeyValue, RocksKeyValue


@dataclass(frozen=True)
class Problem:
    """One broken place: the session, the version, and what is wrong."""

    session: str | None
    version: int | None
    what: str

    def __str__(self) -> str:
        where = f"session {self.session!r}" if self.session is not None else "store"
        if self.version is not None:
            where += f" version {self.version}"
        return f"{where}: {self.what}"


@dataclass
class Report:
    """The outcome of a verification."""

    sessions: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)
    live_digest: str = ""
    fresh_digest: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether everything held."""
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        """The JSON form of ``handoff verify --json``."""
        return {
            "ok": self.ok,
            "sessions": self.sessions,
            "events": self.events,
            "problems": [{"session": p.session, "version": p.version, "error": p.what} for p in self.problems],
            "liveDigest": self.live_digest,
            "freshDigest": self.fresh_digest,
            "seconds": round(self.seconds, 3),
        }


class _ChainCheck:
    """Checks one session's records in order and yields the decoded envelopes that hold."""

    _head = msgspec.json.Decoder(dict[str, object])

    def __init__(self, session: str, report: Report) -> None:
        self.session = session
        self.report = report
        self.expected = 1
        self.prev_hash = GENESIS_HASH

    def _fail(self, version: int | None, what: str) -> None:
        self.report.problems.append(Problem(self.session, version, what))

    def feed(self, version: int, record: bytes) -> Envelope | None:
        if version != self.expected:
            missing = "missing" if version > self.expected else "duplicated"
            self._fail(self.expected, f"event is {missing} (the stream goes from {self.expected - 1} to {version})")
            self.expected = version
        self.expected += 1
        env, why = verify_record(record)
        if env is None:
            self._fail(version, str(why))
            try:  # keep following the chain from what the record claims, to report one break once
                self.prev_hash = decode_envelope(record).hash
            except CodecError:
                pass
            return None
        if env.session_key != self.session or env.version != version:
            self._fail(version, f"record stored here says session {env.session_key!r} version {env.version}")
        elif env.prev_hash != self.prev_hash:
            self._fail(version, "prevHash does not link to the previous event's hash (reordered or replaced)")
        self.prev_hash = env.hash
        return env


def _checked_stream(log: EventLog, session: str | None, report: Report, progress: Progress) -> Iterator[Envelope]:
    check: _ChainCheck | None = None
    for key, version, record in log.all_records(session):
        if check is None or key != check.session:
            _finish(log, check, report)
            check = _ChainCheck(key, report)
            report.sessions += 1
        report.events += 1
        progress.advance()
        env = check.feed(version, record)
        if env is not None:
            yield env
    _finish(log, check, report)


def _finish(log: EventLog, check: _ChainCheck | None, report: Report) -> None:
    if check is None:
        return
    state = log.state(check.session)
    last = check.expected - 1
    if state is not None and state.version != last:
        report.problems.append(
            Problem(
                check.session, last + 1, f"stream ends at version {last} but the session state is at {state.version}"
            )
        )


def _session_prefixes(session: str) -> tuple[bytes, ...]:
    return (keys.context_prefix(session), keys.session_key(session), keys.summary_key(session))


def verify(kv: KeyValue, *, session: str | None = None, scratch: Path | None = None, quiet: bool = False) -> Report:
    """Verify the log and the views in `kv`; `scratch` is where the fresh fold is built."""
    log = EventLog(kv)
    report = Report()
    if session is not None and log.state(session) is None and next(kv.scan(event_prefix(session)), None) is None:
        report.problems.append(Problem(session, None, "no such session in this store"))
        return report
    progress = Progress("verify", total=None if session else log.count(), quiet=quiet)
    workdir = Path(tempfile.mkdtemp(prefix=".verify-", dir=scratch))
    try:
        fresh = RocksKeyValue(str(workdir))
        fold_events(fresh, _checked_stream(log, session, report, progress))
        if session is None:
            _check_positions(log, report)
        prefixes = VIEW_PREFIXES if session is None else _session_prefixes(session)
        if report.ok:
            diff = first_difference(kv, fresh, prefixes)
            if diff is not None:
                report.problems.append(Problem(diff.session, diff.version, diff.what))
        report.live_digest = digest(kv, prefixes)
        report.fresh_digest = digest(fresh, prefixes)
        fresh.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    progress.done()
    report.seconds = progress.elapsed()
    return report


def _check_positions(log: EventLog, report: Report) -> None:
    """The global order must count every event exactly once (a deleted event leaves it one short)."""
    seen = sum(1 for _ in log.kv.scan(b"G:"))
    if seen != report.events:
        report.problems.append(
            Problem(None, None, f"the global order has {seen} positions but {report.events} events are stored")
        )
