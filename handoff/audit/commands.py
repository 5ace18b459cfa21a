"""The audit and replay commands of the CLI: verify, replay, audit, export, import, schema.

Each reads the embedded store under ``--data-dir``; verify, audit and export open it read-only, so
they can run beside a live engine (they see the store as it was when they opened it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handoff.audit import trail
from handoff.audit.replay import parse_time, replay
from handoff.audit.transfer import export_lines, import_lines
from handoff.audit.verify import verify
from handoff.config import DataDir, Env
from handoff.engine.log import EventLog
from handoff.kernel.errors import HandoffError
from handoff.kernel.schema import all_schemas
from projections.store import RocksKeyValue

DEFAULT_PARTITIONS = 8  # streams.topics.DEFAULT_PARTITIONS, without importing Kafka clients for embedded runs

Runner = Callable[[argparse.Namespace, Env], int]

EPILOG = {
    "verify": "exit status: 0 when every chain and every view holds, 1 otherwise (the first broken place is named)\n"
    "examples:\n  handoff verify --data-dir ./data --json\n  handoff verify --kafka 127.0.0.1:9092",
    "replay": "examples:\n  handoff replay --to /tmp/views\n"
    "  handoff replay --to /tmp/then --until-time 2026-11-27T10:00:00Z",
    "audit": "example: handoff audit my-session --format json",
    "export": "examples:\n  handoff export > log.jsonl   (CloudEvents 1.0, one event per line)\n"
    "  handoff export --kafka 127.0.0.1:9092 > log.jsonl   (partition by partition, in offset order)",
    "import": "examples:\n  handoff import --data-dir ./fresh < log.jsonl   (refuses a broken hash chain)\n"
    "  handoff import --kafka 127.0.0.1:9092 < log.jsonl   (an empty deployment, workers stopped)",
    "schema": "example: handoff schema --kind command > command.schema.json",
}


def _data_dir(parser: argparse.ArgumentParser, *, partitions: bool = False) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, help="default: $HANDOFF_DATA_DIR or the user data dir + /handoff")
    where.add_argument("--kafka", metavar="BOOTSTRAP", help="Kafka mode: the log is the deployment's events topic")
    parser.add_argument(
        "--topic-prefix",
        default=os.environ.get("HANDOFF_KAFKA_TOPIC_PREFIX") or "handoff",
        help="with --kafka: the topics' prefix (default: $HANDOFF_KAFKA_TOPIC_PREFIX or handoff)",
    )
    if partitions:
        parser.add_argument(
            "--partitions",
            type=int,
            default=int(os.environ.get("HANDOFF_KAFKA_PARTITIONS") or DEFAULT_PARTITIONS),
            help="with --kafka: partitions of topics this creates (default: $HANDOFF_KAFKA_PARTITIONS or 8)",
        )


def register(commands: Any) -> None:
    """Add the audit subcommands to the CLI's subparsers (their runners are `RUNNERS`)."""
    raw = argparse.RawDescriptionHelpFormatter

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text, epilog=EPILOG[name], formatter_class=raw)  # type: ignore[no-any-return]

    p = add("verify", "check every hash chain and every projection against a fresh fold of the log")
    p.add_argument("--session", metavar="KEY", help="only this session")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _data_dir(p)
    p = add("replay", "rebuild every projection from the log into a fresh store")
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="an empty or new directory")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--until-version", type=int, metavar="N", help="stop every session after its version N")
    group.add_argument("--until-time", metavar="T", help="only events that occurred at or before T (ISO 8601)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _data_dir(p)
    p = add("audit", "a session's timeline, with every handoff package re-derived and its hash checked")
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--format", choices=("text", "json", "jsonl"), default="text")
    _data_dir(p)
    p = add("export", "write the log as CloudEvents JSON lines")
    p.add_argument("--session", metavar="KEY", help="only this session")
    p.add_argument("--out", type=Path, help="a file (default: stdout)")
    _data_dir(p)
    p = add("import", "load CloudEvents JSON lines into a fresh data dir, checking every hash chain first")
    p.add_argument("--in", dest="source", type=Path, help="a file (default: stdin)")
    _data_dir(p, partitions=True)
    p = add("schema", "print the JSON Schema of events and commands")
    p.add_argument("--kind", choices=("all", "events", "command"), default="all")


def _open(ns: argparse.Namespace, env: Env, *, read_only: bool) -> RocksKeyValue:
    data = DataDir(ns.data_dir or env.data_dir)
    if read_only and not data.db.exists():
        raise FileNotFoundError(f"no handoff store at {data.db}")
    data.root.mkdir(parents=True, exist_ok=True)
    try:
        return RocksKeyValue(str(data.db), read_only=read_only)
    except Exception as exc:  # noqa: BLE001 - rocksdict raises a bare Exception (a lock, a corrupt file)
        raise OSError(f"cannot open the store at {data.db}: {exc}") from exc


def run_verify(ns: argparse.Namespace, env: Env) -> int:
    """`handoff verify`."""
    if ns.kafka:
        from handoff.audit.kafka import verify_kafka  # Kafka clients only for --kafka

        report = verify_kafka(ns.kafka, ns.topic_prefix, session=ns.session, quiet=ns.json)
    else:
        kv = _open(ns, env, read_only=True)
        report = verify(kv, session=ns.session, scratch=Path(ns.data_dir or env.data_dir), quiet=ns.json)
    if ns.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        print(f"OK: {report.events:,} events in {report.sessions:,} sessions; every chain and every view holds")
        print(f"views digest {report.live_digest}")
    else:
        print(f"BROKEN: {report.problems[0]}")
        for problem in report.problems[1:10]:
            print(f"  also: {problem}")
    return 0 if report.ok else 1


def run_replay(ns: argparse.Namespace, env: Env) -> int:
    """`handoff replay`."""
    source = None if ns.kafka else _open(ns, env, read_only=True)
    ns.to.mkdir(parents=True, exist_ok=True)
    target = RocksKeyValue(str(ns.to))
    version, until_time = ns.until_version, parse_time(ns.until_time) if ns.until_time else None
    try:
        if source is None:
            from handoff.audit.kafka import replay_kafka

            result = replay_kafka(
                ns.kafka, ns.topic_prefix, target, until_version=version, until_time=until_time, quiet=ns.quiet
            )
        else:
            result = replay(source, target, until_version=version, until_time=until_time, quiet=ns.quiet)
    finally:
        target.close()
    print(f"replayed {result.events:,} events in {result.seconds:.1f}s ({result.rate:,.0f} events/s) into {ns.to}")
    print(f"views digest {result.digest}")
    return 0


def run_audit(ns: argparse.Namespace, env: Env) -> int:
    """`handoff audit`."""
    if ns.kafka:
        from handoff.audit.kafka import session_stream

        steps = list(trail.timeline_of(ns.session, session_stream(ns.kafka, ns.topic_prefix, ns.session)))
    else:
        steps = list(trail.timeline(EventLog(_open(ns, env, read_only=True)), ns.session))
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

        lines = export_kafka(ns.kafka, ns.topic_prefix, ns.session, quiet=ns.out is None)
    else:
        lines = export_lines(_open(ns, env, read_only=True), ns.session, quiet=ns.out is None)
    out = open(ns.out, "wb") if ns.out else sys.stdout.buffer  # noqa: SIM115 - closed below
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
        from streams.topics import Topics

        topics = Topics(ns.topic_prefix, ns.partitions)
        if ns.source:
            with open(ns.source, "rb") as stream:
                result = import_kafka(ns.kafka, topics, stream, quiet=False)
        else:
            result = import_kafka(ns.kafka, topics, sys.stdin.buffer, quiet=False)
        print(f"imported {result.events:,} events of {result.sessions:,} sessions in {result.seconds:.1f}s")
        return 0
    kv = _open(ns, env, read_only=False)
    try:
        if ns.source:
            with open(ns.source, "rb") as stream:
                result = import_lines(kv, stream, quiet=False)
        else:
            result = import_lines(kv, sys.stdin.buffer, quiet=False)
    finally:
        kv.close()
    print(f"imported {result.events:,} events of {result.sessions:,} sessions in {result.seconds:.1f}s")
    return 0


def run_schema(ns: argparse.Namespace, env: Env) -> int:
    """`handoff schema`."""
    schemas = all_schemas()
    chosen = schemas if ns.kind == "all" else schemas["events" if ns.kind == "events" else "command"]
    print(json.dumps(chosen, indent=2, sort_keys=True))
    return 0


def guarded(runner: Runner) -> Runner:
    """Turn expected failures into one clear line on stderr and exit status 2."""

    def run(ns: argparse.Namespace, env: Env) -> int:
        try:
            return runner(ns, env)
        except HandoffError as exc:
            print(f"handoff {ns.command}: {exc.message}", file=sys.stderr)
        except OSError as exc:
            print(f"handoff {ns.command}: {exc}", file=sys.stderr)
        return 2

    return run


RUNNERS: dict[str, Runner] = {
    "verify": run_verify,
    "replay": run_replay,
    "audit": run_audit,
    "export": run_export,
    "import": run_import,
    "schema": run_schema,
}
