"""The runners of the audit and replay commands: verify, replay, audit, export, import, schema.

Their arguments are declared in `handoff.audit.arguments`; this module is imported only to run one.

Each reads the embedded store under ``--data-dir``; verify, audit and export open it read-only, so
they can run beside a live engine (they see the store as it was when they opened it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from handoff.audit import anchor, trail
from handoff.audit.purge import run_purge
from handoff.audit.replay import parse_time
from handoff.audit.report import Problem, Report
from handoff.audit.transfer import ImportResult, export_lines, import_lines
from handoff.config import DataDir, Env
from handoff.kernel.errors import HandoffError, InvalidArgument
from handoff.kernel.schema import all_schemas
from handoff.kernel.text import escape_controls
from handoff.storage.kv import RocksKeyValue
from handoff.storage.log import EventLog

if TYPE_CHECKING:
    from streams.security import KafkaSecurity

Runner = Callable[[argparse.Namespace, Env], int]


def _open(ns: argparse.Namespace, env: Env) -> RocksKeyValue:
    """The data dir's store, read-only: the commands that read it may run beside a live engine."""
    db = DataDir(ns.data_dir or env.data_dir).db
    if not db.exists():
        raise FileNotFoundError(f"no handoff store at {db}")
    return _rocks(db, read_only=True)


def _rocks(db: Path, *, read_only: bool = False) -> RocksKeyValue:
    """The RocksDB store at `db`; OSError saying why when it cannot be opened."""
    try:
        return RocksKeyValue(str(db), read_only=read_only)
    except Exception as exc:  # rocksdict raises a bare Exception (a lock, a corrupt file)
        hint = "; an engine has it open: stop it first" if "lock" in str(exc).lower() else ""
        raise OSError(f"cannot open the store at {db}: {exc}{hint}") from exc


@contextmanager
def building(to: Path, refusal: str) -> Iterator[Path]:
    """A fresh directory beside `to` to build a store in; it becomes `to` only if the block completes.

    A command that fails or is interrupted removes what it built, so `to` is never left half-written
    (a half-imported store would even look usable) and the same command can simply run again. `to`
    must be new or an empty directory; otherwise `refusal` says why not.
    """
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise InvalidArgument(f"{to} is not an empty directory; {refusal}")
    to = to.resolve()  # a symlink to an empty directory keeps pointing at what is built
    to.parent.mkdir(parents=True, exist_ok=True)
    path = to.with_name(f".{to.name}.building-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)  # left by a killed run of this same pid, long ago
    try:
        yield path
        if to.exists():
            to.rmdir()  # still empty: checked above, and nothing writes there
        path.rename(to)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def run_verify(ns: argparse.Namespace, env: Env) -> int:
    """`handoff verify`, and with ``--anchor`` the check that the log still extends a signed anchor."""
    anchored = _anchored(ns)
    if ns.kafka:
        from handoff.audit.kafka import kafka_departures, kafka_operations_departure, verify_kafka  # only for --kafka

        security = kafka_security(ns)
        report = verify_kafka(
            ns.kafka, ns.topic_prefix, session=ns.session, quiet=ns.json, accel=env.kafka_accel, security=security
        )
        if anchored is not None:
            gone = kafka_departures(ns.kafka, ns.topic_prefix, anchored.heads, security)
            moved = kafka_operations_departure(ns.kafka, ns.topic_prefix, anchored.operations, security)
            report.problems[:0] = _anchor_problems(anchored, gone, moved)
    else:
        from handoff.audit.parallel import default_jobs, verify_store

        kv = _open(ns, env)
        report = verify_store(
            kv, jobs=ns.jobs or default_jobs(), session=ns.session, scratch=Path(ns.data_dir or env.data_dir),
            quiet=ns.json,
        )  # fmt: skip
        if anchored is not None:
            gone = anchor.store_departures(EventLog(kv), anchored.heads)
            moved = anchor.store_operations_departure(kv, anchored.operations)
            report.problems[:0] = _anchor_problems(anchored, gone, moved)
    if ns.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, whole=ns.session is None)
    return 0 if report.ok else 1


def _print_report(report: Report, *, whole: bool) -> None:
    """The verdict for a human: OK, BROKEN (the first break, then up to nine more) or INCOMPLETE."""
    held = f"{_count(report.events, 'event')} in {_count(report.sessions, 'session')}"
    problems = sorted(report.problems, key=lambda p: p.unchecked)  # breaks first, each kind in its order
    for erased in report.erased:
        print(escape_controls(f"ERASED: session {erased!r}: its chain holds; its content was destroyed with its key"))
    if report.ok:
        print(f"OK: {held}; every chain and every view holds")
        if whole:  # a single session's verify leaves the operations log alone
            print(f"operations log: {_count(report.operations, 'record')}; its chain holds")
        print(f"views digest {report.live_digest}")
    elif not problems[0].unchecked:
        print(f"BROKEN: {problems[0]}")
        for problem in problems[1:10]:
            print(f"  also: {problem}")
    else:  # nothing is broken, but not everything could be compared: not a yes
        print(f"INCOMPLETE: {held}; every chain holds, but not every view could be compared:")
        for problem in problems[:10]:
            print(f"  {problem}")


def _anchor_problems(anchored: anchor.Anchored, gone: list[anchor.Departure], moved: str | None) -> list[Problem]:
    """Where the log no longer extends the anchor: the sessions in key order, then the operations log."""
    found = [Problem(d.session, None, f"the log no longer extends the anchor: {d.what}") for d in gone]
    if moved is not None and anchored.operations is not None:
        what = f"the operations log no longer extends the anchor: {moved}"
        found.append(Problem(None, None, what, operations=anchored.operations[0]))
    return found


def _anchored(ns: argparse.Namespace) -> anchor.Anchored | None:
    """The anchor of ``--anchor``, checked; with ``--session`` only that session's head is compared."""
    if ns.anchor is None:
        if ns.public_key is not None:
            raise InvalidArgument("--public-key goes with --anchor")
        return None
    if ns.public_key is None:
        raise InvalidArgument("--anchor needs --public-key: the anchor.pub of the key that signed it")
    try:
        document = json.loads(ns.anchor.read_text())
    except ValueError as exc:
        raise InvalidArgument(f"{ns.anchor} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidArgument(f"{ns.anchor} is not an anchor")
    anchored = anchor.checked_statement(document, anchor.load_public(ns.public_key))
    if ns.session is not None:
        return anchor.Anchored({k: v for k, v in anchored.heads.items() if k == ns.session}, None)
    return anchored


def run_anchor(ns: argparse.Namespace, env: Env) -> int:
    """`handoff anchor`: a new key pair, or a signed statement of the log's chain heads on stdout."""
    if ns.new_key is not None:
        private, public = anchor.new_key(ns.new_key)
        print(f"wrote {private} (keep it secret, away from the log's writers) and {public}", file=sys.stderr)
        return 0
    key = anchor.load_private(ns.key)
    if ns.kafka:
        from handoff.audit.kafka import kafka_heads  # Kafka clients only for --kafka

        heads, position, operations = kafka_heads(ns.kafka, ns.topic_prefix, kafka_security(ns))
        statement = anchor.signed_statement(heads, position, key, operations=operations)
    else:
        kv = _open(ns, env)
        log = EventLog(kv)
        statement = anchor.signed_statement(
            anchor.store_heads(log), log.position(), key, operations=anchor.store_operations_head(kv)
        )
    print(json.dumps(statement, indent=1, sort_keys=True))
    return 0


def run_replay(ns: argparse.Namespace, env: Env) -> int:
    """`handoff replay`: the store is built beside ``--to`` and takes its name only once it is whole."""
    source = None if ns.kafka else _open(ns, env)
    version, until_time = ns.until_version, parse_time(ns.until_time) if ns.until_time else None
    with building(ns.to, "replay builds a fresh store") as path:
        target = RocksKeyValue(str(path), bulk=True)
        try:
            if source is None:
                from handoff.audit.kafka import replay_kafka
                from handoff.audit.parallel import default_jobs

                result = replay_kafka(
                    ns.kafka, ns.topic_prefix, target, until_version=version, until_time=until_time, quiet=ns.quiet,
                    jobs=ns.jobs or default_jobs(), scratch=path.parent, accel=env.kafka_accel,
                    security=kafka_security(ns),
                )  # fmt: skip
            else:
                from handoff.audit.parallel import default_jobs, replay_store

                result = replay_store(
                    source, target, jobs=ns.jobs or default_jobs(), until_version=version, until_time=until_time,
                    scratch=path.parent, quiet=ns.quiet,
                )  # fmt: skip
        finally:
            target.close()
    rate = f"{result.seconds:.1f}s ({result.rate:,.0f} events/s)"
    print(f"replayed {_count(result.events, 'event')} in {rate} into {ns.to}")
    print(f"views digest {result.digest} (computed in {result.digest_seconds:.1f}s)")
    return 0


def run_audit(ns: argparse.Namespace, env: Env) -> int:
    """`handoff audit`."""
    if ns.kafka:
        from handoff.audit.kafka import session_stream

        stream = session_stream(
            ns.kafka, ns.topic_prefix, ns.session, accel=env.kafka_accel, security=kafka_security(ns)
        )
        steps = list(trail.timeline_of(ns.session, stream))
    else:
        steps = list(trail.timeline(EventLog(_open(ns, env)), ns.session))
    if ns.format == "text":
        print(trail.render_text(ns.session, steps))
    elif ns.format == "json":
        print(json.dumps({"session": ns.session, "events": [trail.step_dict(s) for s in steps]}, indent=2))
    else:
        for step in steps:
            print(json.dumps(trail.step_dict(step)))
    return 0 if all(s.package is None or s.package.ok for s in steps) else 1


def run_export(ns: argparse.Namespace, env: Env) -> int:
    """`handoff export`."""
    if ns.kafka:
        from handoff.audit.kafka import export_kafka

        lines = export_kafka(
            ns.kafka, ns.topic_prefix, ns.session, quiet=ns.out is None, accel=env.kafka_accel,
            security=kafka_security(ns),
        )  # fmt: skip
    else:
        lines = export_lines(_open(ns, env), ns.session, quiet=ns.out is None)
    out = open(ns.out, "wb") if ns.out else sys.stdout.buffer  # closed below
    try:
        for line in lines:
            out.write(line + b"\n")
    finally:
        if ns.out:
            out.close()
    return 0


def run_import(ns: argparse.Namespace, env: Env) -> int:
    """`handoff import`."""
    if ns.kafka:
        from handoff.audit.kafka import import_kafka
        from streams.replication import from_arguments
        from streams.topiccheck import TopicMismatch
        from streams.topics import Topics

        topics = Topics(ns.topic_prefix, ns.partitions, from_arguments(ns, os.environ))
        with _import_source(ns) as stream:
            try:
                result = import_kafka(
                    ns.kafka, topics, stream, quiet=False, accel=env.kafka_accel, security=kafka_security(ns)
                )
            except TopicMismatch as exc:
                print(f"handoff import: {exc}", file=sys.stderr)
                return 1
        already = f" ({result.already:,} more were already there)" if result.already else ""
        print(f"imported {_imported(result)} in {result.seconds:.1f}s{already}")
        return 0
    data = DataDir(ns.data_dir or env.data_dir)
    _drop_if_empty(data.db)
    with _import_source(ns) as stream, building(data.db, "import into a fresh data dir") as path:
        kv = RocksKeyValue(str(path), bulk=True)  # a crash leaves only the hidden directory: no WAL needed
        try:
            result = import_lines(kv, stream, quiet=False)
        finally:
            kv.close()
    print(f"imported {_imported(result)} in {result.seconds:.1f}s")
    return 0


@contextmanager
def _import_source(ns: argparse.Namespace) -> Iterator[IO[bytes]]:
    """The lines to import: the ``--in`` file, or stdin when something is piped into it."""
    if ns.source:
        with open(ns.source, "rb") as stream:
            yield stream
        return
    if sys.stdin.isatty():  # nothing piped in: reading would wait for typing
        raise InvalidArgument("give the lines with --in FILE, or pipe them in: handoff import < log.jsonl")
    yield sys.stdin.buffer


def _drop_if_empty(db: Path) -> None:
    """Remove the store at `db` if it holds nothing (an engine started once and never written to)."""
    if not db.is_dir() or not any(db.iterdir()):
        return
    kv = _rocks(db)  # takes the lock: refused while an engine has the store open
    try:
        if next(kv.scan(b""), None) is not None:
            raise InvalidArgument(f"the store at {db} is not empty; import into a fresh data dir")
    finally:
        kv.discard()
    shutil.rmtree(db)


def run_schema(ns: argparse.Namespace, env: Env) -> int:
    """`handoff schema`."""
    schemas = all_schemas()
    chosen = schemas if ns.kind == "all" else schemas["events" if ns.kind == "events" else "command"]
    print(json.dumps(chosen, indent=2, sort_keys=True))
    return 0


def _count(n: int, noun: str) -> str:
    """``1 event``, ``2 events``, ``1,000 events``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _imported(result: ImportResult) -> str:
    return f"{_count(result.events, 'event')} of {_count(result.sessions, 'session')}"


def kafka_security(ns: argparse.Namespace) -> KafkaSecurity:
    """The Kafka security settings of a ``--kafka`` audit command (its flags, else ``HANDOFF_KAFKA_*``)."""
    from streams.security import KafkaSecurity

    try:
        return KafkaSecurity.from_options(ns, os.environ)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def guarded(runner: Runner) -> Runner:
    """Turn expected failures into one clear line on stderr and exit status 2 (130 for Ctrl-C)."""

    def run(ns: argparse.Namespace, env: Env) -> int:
        try:
            return runner(ns, env)
        except HandoffError as exc:
            print(escape_controls(f"handoff {ns.command}: {exc.message}"), file=sys.stderr)
        except OSError as exc:
            print(escape_controls(f"handoff {ns.command}: {exc}"), file=sys.stderr)
        except KeyboardInterrupt:  # Ctrl-C: what replay or import had built is already removed
            fresh_line = "\n" if sys.stderr.isatty() else ""  # after a progress line that ends in \r, not \n
            print(f"{fresh_line}handoff {ns.command}: interrupted", file=sys.stderr)
            return 130
        return 2

    return run


RUNNERS: dict[str, Runner] = {
    "verify": run_verify,
    "anchor": run_anchor,
    "replay": run_replay,
    "audit": run_audit,
    "export": run_export,
    "import": run_import,
    "purge": run_purge,
    "schema": run_schema,
}
