"""`handoff replay`: rebuild every projection from the log into a fresh store, optionally as of a moment."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from handoff.audit.progress import Progress
from handoff.kernel.codec import decode_envelope
from handoff.kernel.errors import InvalidArgument
from handoff.kernel.events import Envelope
from handoff.storage.digest import digest
from handoff.storage.kv import KeyValue
from handoff.storage.log import EventLog
from projections.replay import fold_events

Reveal = Callable[[Envelope], Envelope]  # shows an event in the clear while its session's data key lives


def _as_stored(env: Envelope) -> Envelope:
    """No data keys at hand (a log from elsewhere): encrypted fields stay hidden, as for an erased session."""
    return env


@dataclass(frozen=True)
class ReplayResult:
    """How many events were folded, how fast, and the digest of the views built (and how long that took)."""

    events: int
    seconds: float
    digest: str
    digest_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / max(self.seconds, 1e-9)


def parse_time(text: str) -> str:
    """A user's ISO 8601 time as the log writes times (UTC, milliseconds, ``Z``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument(f"--until-time {text!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _selected(
    records: Iterable[tuple[str, int, bytes]], until_version: int | None, until_time: str | None, shown: Reveal
) -> Iterator[Envelope]:
    for _, version, record in records:
        if until_version is not None and version > until_version:
            continue
        env = shown(decode_envelope(record))
        if until_time is not None and env.occurred_at > until_time:
            continue
        yield env


def replay_records(
    records: Iterable[tuple[str, int, bytes]],
    target: KeyValue,
    *,
    shown: Reveal = _as_stored,
    total: int | None = None,
    until_version: int | None = None,
    until_time: str | None = None,
    quiet: bool = False,
) -> ReplayResult:
    """Fold the records of a log, in its order, into the empty store `target`, up to a version or a time.

    Any log can feed it: the embedded store's key order, or a Kafka partition's offset order.
    """
    if until_version is None and until_time is None:
        return replay_values((r for _, _, r in records), target, total=total, quiet=quiet, shown=shown)
    return _replay(target, _selected(records, until_version, until_time, shown), Progress("replay", quiet=quiet))


def replay_values(
    records: Iterable[bytes],
    target: KeyValue,
    *,
    total: int | None = None,
    quiet: bool = False,
    shown: Reveal = _as_stored,
) -> ReplayResult:
    """Fold every record of a log, in its order, into the empty store `target` (no key or filter needed)."""
    progress = Progress("replay", total=total, quiet=quiet)
    return _replay(target, (shown(decode_envelope(r)) for r in records), progress)


def require_empty(target: KeyValue) -> None:
    """InvalidArgument unless `target` holds nothing: a replay builds a fresh store."""
    if next(target.scan(b""), None) is not None:
        raise InvalidArgument("the target store is not empty; replay builds a fresh store")


def _replay(target: KeyValue, stream: Iterable[Envelope], progress: Progress) -> ReplayResult:
    """Fold `stream` into `target`, counting each folded batch on `progress`."""
    require_empty(target)
    count = fold_events(target, stream, on_batch=progress.advance)
    return finished(target, count, progress)


def finished(target: KeyValue, count: int, progress: Progress) -> ReplayResult:
    """The result of a replay that folded `count` events into `target`: the fold's time, then the digest's."""
    progress.done(count)
    seconds = progress.elapsed()
    started = time.perf_counter()
    views = digest(target)
    return ReplayResult(count, seconds, views, time.perf_counter() - started)


def replay(
    source: KeyValue,
    target: KeyValue,
    *,
    until_version: int | None = None,
    until_time: str | None = None,
    quiet: bool = False,
) -> ReplayResult:
    """Fold the log of `source` into the empty store `target`; stop each session at a version or a time."""
    log = EventLog(source)
    if until_version is None and until_time is None:  # no need to read each record's key
        return replay_values(log.all_values(), target, total=log.count(), quiet=quiet, shown=log.keys.reveal)
    return replay_records(
        log.all_records(),
        target,
        total=log.count(),
        until_version=until_version,
        until_time=until_time,
        quiet=quiet,
        shown=log.keys.reveal,
    )
