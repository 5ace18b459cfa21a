"""The audit tools over a Kafka deployment: verify, replay, audit, export, import and purge against ``handoff.events``.

Every tool reads the events topic partition by partition, from the beginning to the end offsets taken
when it starts, and feeds the records to the same chain check, fold and timeline as the embedded
store (`handoff.audit.verify`, `.replay`, `.trail`). A session lives in one partition (the key is its
sessionKey), so a partition is a self-contained log: verify folds each into its own scratch store and
compares that partition's digest with the one its worker serves, naming the partition that differs.
The operations topic (job and configuration changes, one partition) is checked as its own chain.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec

from handoff.audit import anchor
from handoff.audit.opslog import OperationsCheck, check_records
from handoff.audit.parallel import PARALLEL_FROM, replay_in_parallel
from handoff.audit.progress import Progress
from handoff.audit.replay import ReplayResult, Reveal, replay_records, replay_values
from handoff.audit.report import Problem, Report
from handoff.audit.transfer import ImportResult, checked_records, data_key_line, to_cloudevent
from handoff.audit.verify import StoredRecord, checked_stream, noting_erasures, session_prefixes
from handoff.kernel.codec import decode_envelope
from handoff.kernel.commands import EraseSession
from handoff.kernel.errors import InvalidArgument, SessionNotFound
from handoff.kernel.events import Envelope
from handoff.storage.datakeys import revealer
from handoff.storage.digest import combine, digest_sum
from handoff.storage.keys import VIEW_PREFIXES
from handoff.storage.kv import KeyValue, RocksKeyValue
from projections.replay import fold_events
from streams.client import KafkaService
from streams.logreader import LogReader, LogRecord, PartitionDigest, live_workers, view_digests
from streams.logwriter import publish_partition
from streams.operations import operations_topic
from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import Topics, ensure_topics


class _Head(msgspec.Struct, rename="camel"):
    session_key: str = ""
    version: int = 0


_head = msgspec.json.Decoder(_Head)


def _head_of(value: bytes) -> _Head | None:
    try:
        return _head.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _stored(records: Iterable[LogRecord], topics: Topics, report: Report | None) -> Iterator[StoredRecord]:
    """Kafka records as the chain check takes them: filed under their key, with the version they claim."""
    for rec in records:
        head = _head_of(rec.value)
        key = rec.key.decode(errors="replace") if rec.key is not None else (head.session_key if head else "")
        if report is not None and topics.partition_for(key) != rec.partition:
            where = topics.partition_for(key)
            problem = Problem(key, head.version if head else None, f"record belongs on partition {where}", rec.where)
            report.problems.append(problem)
        yield key, (head.version if head and head.version > 0 else None), rec.value, rec.where


def _of_session(records: Iterable[LogRecord], session: str | None) -> Iterator[LogRecord]:
    wanted = session.encode() if session is not None else None
    return (r for r in records if wanted is None or r.key == wanted)


# -- verify ----------------------------------------------------------------------------------------


@dataclass
class _Folded:
    """The offset of the record the chain check last consumed (the fold stops at the worker's offset)."""

    offset: int = -1


def verify_kafka(
    bootstrap: str, prefix: str = "handoff", *, session: str | None = None, scratch: Path | None = None,
    quiet: bool = False, accel: bool = True, security: KafkaSecurity = PLAINTEXT,
) -> Report:  # fmt: skip
    """Check every chain in the events topic, fold it afresh, and compare each partition with its worker's views."""
    report = Report()
    prefixes = VIEW_PREFIXES if session is None else session_prefixes(session)
    with LogReader(bootstrap, prefix, accel=accel, security=security) as reader:
        topics = reader.topics
        live = view_digests(live_workers(reader.worker_urls()), prefixes)  # before the ends: live ≤ what is read
        ends = reader.end_offsets()
        shown = revealer(reader.data_keys(session))  # the workers' views hold live sessions in the clear
        parts = [topics.partition_for(session)] if session is not None else sorted(ends)
        progress = Progress("verify", total=None if session else sum(ends.values()), quiet=quiet)
        workdir = Path(tempfile.mkdtemp(prefix=".verify-", dir=scratch))
        fresh: dict[int, int] = {}
        try:
            for p in parts:
                upto = live[p].applied if p in live else ends[p] - 1
                fresh[p] = _fold_partition(
                    reader, p, ends[p], upto, session, report, progress, workdir, prefixes, shown
                )  # fmt: skip
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        progress.done()
        operations = Report()
        if session is None:
            _check_operations(reader, operations)
    if session is not None and report.events == 0:
        report.problems.append(Problem(session, None, f"no such session in {topics.events}"))
        return report
    _compare(report, parts, fresh, live)
    report.problems += operations.problems  # after the views' comparison: an operations break explains no view
    report.operations, report.operations_superseded = operations.operations, operations.operations_superseded
    report.seconds = progress.elapsed()
    return report


def _fold_partition(
    reader: LogReader, p: int, end: int, upto: int, session: str | None, report: Report, progress: Progress,
    workdir: Path, prefixes: tuple[bytes, ...], shown: Reveal,
) -> int:  # fmt: skip
    """Chain-check partition p to its end; fold it up to offset `upto` into a scratch store; its digest_sum."""
    folded = _Folded()

    def records() -> Iterator[LogRecord]:
        for rec in _of_session(reader.records(p, end), session):
            folded.offset = rec.offset
            yield rec

    def until_worker() -> Iterator[Envelope]:
        for env in checked_stream(_stored(records(), reader.topics, report), report, progress, grouped=False):
            if folded.offset <= upto:  # later events are checked, but the worker has not folded them yet
                yield env

    kv = RocksKeyValue(str(workdir / f"p{p}"), bulk=True)
    try:
        fold_events(kv, noting_erasures(until_worker(), report, shown))
        return digest_sum(kv, prefixes)
    finally:
        kv.close()


def _check_operations(reader: LogReader, report: Report) -> OperationsCheck:
    """Check the operations topic's chain into `report` (a topic not yet created is an empty log)."""
    topic = operations_topic(reader.prefix)
    records = (
        (rec.value, f"{topic} offset {rec.offset}")
        for p, end in sorted(reader.end_offsets(topic).items())
        for rec in reader.records(p, end, topic)
    )
    return check_records(records, report, races=True)


def _compare(report: Report, parts: list[int], fresh: dict[int, int], live: dict[int, PartitionDigest]) -> None:
    served = {p: live[p] for p in parts if p in live}
    report.fresh_digest = combine([fresh[p] for p in parts])
    report.live_digest = combine([d.total for d in served.values()])
    if not report.ok:
        return  # a broken chain already explains a difference of the views
    for p in parts:
        d = served.get(p)
        if d is None:
            report.problems.append(
                Problem(None, None, f"partition {p} has no live worker; its views were not compared", unchecked=True)
            )
        elif d.total != fresh[p]:
            what = (
                f"the views of partition {p} ({d.url}, at event offset {d.applied}) differ from a fresh fold of the log"
            )
            report.problems.append(Problem(None, None, what))


# -- replay, audit, export -------------------------------------------------------------------------


def _everything(reader: LogReader, ends: dict[int, int], session: str | None = None) -> Iterator[LogRecord]:
    parts = [reader.topics.partition_for(session)] if session is not None else sorted(ends)
    for p in parts:
        yield from _of_session(reader.records(p, ends[p]), session)


def replay_kafka(
    bootstrap: str, prefix: str, target: KeyValue, *, until_version: int | None = None,
    until_time: str | None = None, quiet: bool = False, jobs: int = 1, scratch: Path | None = None,
    accel: bool = True, security: KafkaSecurity = PLAINTEXT,
) -> ReplayResult:  # fmt: skip
    """Fold the whole events topic (partition by partition, offset order) into the empty store `target`.

    With `jobs` > 1 a large topic is folded by that many processes, a group of partitions each
    (`handoff.audit.parallel`); their scratch stores go under `scratch`. `accel=False`
    (``HANDOFF_KAFKA_ACCEL=0``): records through aiokafka's public consumer only.
    """
    with LogReader(bootstrap, prefix, accel=accel, security=security) as reader:
        ends = reader.end_offsets()
        keys = reader.data_keys()  # live sessions fold in the clear, as the workers show them
        whole = until_version is None and until_time is None
        if whole and jobs > 1 and len(ends) > 1 and sum(ends.values()) >= PARALLEL_FROM:
            return replay_in_parallel(
                bootstrap, prefix, ends, target, jobs=jobs, scratch=scratch, quiet=quiet, accel=accel,
                security=security, keys=keys,
            )  # fmt: skip
        shown = revealer(keys)
        if whole:  # no need to read each record's key and version
            values = (value for p in sorted(ends) for value in reader.values(p, ends[p]))
            return replay_values(values, target, total=sum(ends.values()), quiet=quiet, shown=shown)
        records = ((k, v or 0, r) for k, v, r, _ in _stored(_everything(reader, ends), reader.topics, None))
        return replay_records(
            records, target, total=sum(ends.values()), until_version=until_version, until_time=until_time, quiet=quiet,
            shown=shown,
        )  # fmt: skip


def session_stream(
    bootstrap: str, prefix: str, session: str, *, accel: bool = True, security: KafkaSecurity = PLAINTEXT
) -> list[Envelope]:
    """A session's events, read from its partition."""
    with LogReader(bootstrap, prefix, accel=accel, security=security) as reader:
        shown = revealer(reader.data_keys(session))
        found = [shown(decode_envelope(r.value)) for r in _everything(reader, reader.end_offsets(), session)]
    if not found:
        raise SessionNotFound(f"session {session!r} has no events in {reader.topics.events}", sessionKey=session)
    return found


def export_kafka(
    bootstrap: str,
    prefix: str,
    session: str | None = None,
    quiet: bool = True,
    *,
    accel: bool = True,
    security: KafkaSecurity = PLAINTEXT,
) -> Iterator[bytes]:
    """Every event of the topic (or of one session) as CloudEvents lines: partition by partition, in offset order."""
    with LogReader(bootstrap, prefix, accel=accel, security=security) as reader:
        ends = reader.end_offsets()
        progress = Progress("export", total=None if session else sum(ends.values()), quiet=quiet)
        for rec in _everything(reader, ends, session):
            progress.advance()
            yield to_cloudevent(rec.value)
        for owner, key in sorted(reader.data_keys(session).items()):  # as the embedded export: erased ones have none
            yield data_key_line(owner, key)
        progress.done()


# -- import ----------------------------------------------------------------------------------------


def import_kafka(
    bootstrap: str,
    topics: Topics,
    stream: IO[bytes],
    quiet: bool = True,
    *,
    accel: bool = True,
    security: KafkaSecurity = PLAINTEXT,
) -> ImportResult:
    """Check every chain of the lines, then append each partition's events under its transactional id.

    Each partition of the events topic must be empty or hold a prefix of the file's events for it
    (what an interrupted import of the same file left): the rest is appended, so an import that
    stopped midway can simply run again. Anything else is refused before a record is written, as is
    a deployment with running workers: workers fold the log when they take a partition, so the ones
    started after the import decide on imported state.
    """
    started = time.perf_counter()
    reader = LogReader(bootstrap, topics.prefix, accel=accel, security=security)
    try:
        if not reader.open(missing_ok=True).partitions:  # a fresh deployment: create its topics as a worker would
            reader.run(ensure_topics(bootstrap, topics, accel=accel, security=security))
            reader.open()
        topics = reader.topics  # an existing topic keeps its partition count
        spools = {p: tempfile.TemporaryFile() for p in range(topics.partitions)}
        try:
            sessions: set[str] = set()
            keys: dict[str, bytes] = {}
            for record in checked_records(stream, quiet, keys):
                key = decode_envelope(record).session_key
                sessions.add(key)
                raw = key.encode()
                spools[topics.partition_for(key)].write(b"%d %d\n" % (len(raw), len(record)) + raw + record)
            by_partition: dict[int, dict[bytes, bytes]] = {}
            for owner, data_key in keys.items():  # each session's key goes to its partition of handoff.keys
                by_partition.setdefault(topics.partition_for(owner), {})[owner.encode()] = data_key
            ends = reader.end_offsets()
            held = {p: _held_prefix(reader, p, ends[p], spool) for p, spool in spools.items()}
            _refuse_running_workers(reader)
            count = 0
            for p, spool in spools.items():
                spool.seek(0)
                rest = itertools.islice(_spooled(spool), held[p], None)
                count += reader.run(
                    publish_partition(bootstrap, topics, p, rest, security=security, keys=by_partition.get(p, {}))
                )
        finally:
            for spool in spools.values():
                spool.close()
    finally:
        reader.close()
    return ImportResult(count, len(sessions), time.perf_counter() - started, already=sum(held.values()))


def _spooled(spool: IO[bytes]) -> Iterator[tuple[bytes, bytes]]:
    while line := spool.readline():
        key_len, record_len = map(int, line.split())
        yield spool.read(key_len), spool.read(record_len)


def _held_prefix(reader: LogReader, partition: int, end: int, spool: IO[bytes]) -> int:
    """How many of the file's events for `partition` it already holds, in order; InvalidArgument if any other."""
    if end == 0:
        return 0
    spool.seek(0)
    expected = _spooled(spool)
    count = 0
    for rec in reader.records(partition, end):
        wanted = next(expected, None)
        if wanted is None or rec.value != wanted[1]:
            raise InvalidArgument(
                f"{reader.topics.events} partition {partition} offset {rec.offset} holds an event that is not "
                "the file's next one for it; import only into an empty deployment, or into the one an "
                "interrupted import of this same file left"
            )
        count += 1
    return count


def _refuse_running_workers(reader: LogReader) -> None:
    running = live_workers(reader.worker_urls())
    if running:
        raise InvalidArgument(
            f"{len(running)} worker(s) are running ({', '.join(running)}); stop them, import, then start them: "
            "a worker folds the whole log when it takes a partition"
        )


def _keyed(reader: LogReader, ends: dict[int, int]) -> Iterator[tuple[str, int, bytes]]:
    for key, version, record, _ in _stored(_everything(reader, ends), reader.topics, None):
        if version is not None:
            yield key, version, record


def kafka_heads(
    bootstrap: str, prefix: str, security: KafkaSecurity = PLAINTEXT
) -> tuple[anchor.Heads, dict[str, int], anchor.OperationsHead]:
    """Every session's head in the events topic, the end offsets they were read up to, and the operations head."""
    with LogReader(bootstrap, prefix, security=security) as reader:
        ends = reader.end_offsets()
        heads = anchor.record_heads(_keyed(reader, ends))
        operations = _check_operations(reader, Report())
        return heads, {str(p): end for p, end in sorted(ends.items())}, (operations.position, operations.head)


def kafka_departures(
    bootstrap: str, prefix: str, heads: anchor.Heads, security: KafkaSecurity = PLAINTEXT
) -> list[anchor.Departure]:
    """`anchor.departures` of the events topic: one pass that keeps only the anchored versions' hashes."""
    newest: dict[str, int] = {}
    at_anchor: dict[str, str | None] = {}
    with LogReader(bootstrap, prefix, security=security) as reader:
        for key, version, record in _keyed(reader, reader.end_offsets()):
            newest[key] = max(version, newest.get(key, 0))
            wanted = heads.get(key)
            if wanted is not None and wanted[0] == version:
                at_anchor[key] = anchor.record_heads([(key, version, record)])[key][1]
    return anchor.departures(heads, lambda k, v: at_anchor.get(k), lambda k: newest.get(k, 0))


def kafka_operations_departure(
    bootstrap: str, prefix: str, anchored: anchor.OperationsHead | None, security: KafkaSecurity = PLAINTEXT
) -> str | None:
    """`anchor.operations_departure` of the operations topic, by the chain every process applies."""
    if anchored is None:
        return None
    with LogReader(bootstrap, prefix, security=security) as reader:
        chain = _check_operations(reader, Report())
    return anchor.operations_departure(anchored, chain.chain.get, chain.position)


PURGE_WAIT = 60.0  # seconds `purge_kafka` waits for the owning worker's decision


def purge_kafka(
    bootstrap: str, prefix: str, command: EraseSession, *, accel: bool = True, security: KafkaSecurity = PLAINTEXT,
    timeout: float = PURGE_WAIT,
) -> int:  # fmt: skip
    """Erase a session of a Kafka deployment (``handoff purge --kafka``); the version of its SessionErased event.

    The command goes through the commands topic like any other, so the session's single writer (the
    worker that owns its partition) decides it: in one transaction it appends SessionErased and
    tombstones the session's data key on ``handoff.keys``, then rewrites and compacts its own store.
    A refusal (unknown session, already erased, written before erasure existed) raises its HandoffError;
    no worker answering in time raises Unavailable.
    """
    with LogReader(bootstrap, prefix, accel=accel, security=security) as reader:
        topics = reader.open()  # the deployment's real partition count: it decides where the command goes
    return asyncio.run(_submit(bootstrap, topics, command, accel, security, timeout))


async def _submit(
    bootstrap: str, topics: Topics, command: EraseSession, accel: bool, security: KafkaSecurity, timeout: float
) -> int:
    service = KafkaService(bootstrap, topics=topics, timeout=timeout, kafka_accel=accel, security=security)
    await service.start()
    try:
        outcome = await service.submit(command)
    finally:
        await service.stop()
    return outcome.envelope.version
