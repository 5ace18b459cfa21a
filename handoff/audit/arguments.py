"""The audit commands' arguments: verify, anchor, replay, audit, export, import, schema.

Standard library only, so building the CLI's parser for `handoff stdio` or `serve` does not import
RocksDB, the engine or the audit code; `handoff.audit.commands` holds the runners.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from handoff.config import at_least_one
from streams import replication
from streams.security import add_options as kafka_security_options

DEFAULT_PARTITIONS = 8  # streams.topics.DEFAULT_PARTITIONS, without importing Kafka clients for embedded runs

EPILOG = {
    "verify": "exit status: 0 when every chain (the sessions' and the operations log's) and every view holds,\n"
    "1 otherwise (the first broken place is named)\n"
    "examples:\n  handoff verify --data-dir ./data --json\n  handoff verify --kafka 127.0.0.1:9092\n"
    "  handoff verify --anchor anchor.json --public-key anchor.pub   (the log must still extend the anchor)",
    "replay": "examples:\n  handoff replay --to /tmp/views\n"
    "  handoff replay --to /tmp/then --until-time 2026-11-27T10:00:00Z",
    "audit": "example: handoff audit my-session --format json",
    "export": "examples:\n  handoff export > log.jsonl   (CloudEvents 1.0, one event per line)\n"
    "  handoff export --kafka 127.0.0.1:9092 > log.jsonl   (partition by partition, in offset order)",
    "import": "examples:\n  handoff import --data-dir ./fresh < log.jsonl   (refuses a broken hash chain)\n"
    "  handoff import --kafka 127.0.0.1:9092 < log.jsonl   (an empty deployment, workers stopped)",
    "schema": "example: handoff schema --kind command > command.schema.json",
    "anchor": "examples:\n  handoff anchor --new-key ~/.handoff-anchor   (once: anchor.key 0600, anchor.pub)\n"
    "  handoff anchor --key ~/.handoff-anchor/anchor.key --data-dir ./data > anchor.json\n"
    "  handoff verify --data-dir ./data --anchor anchor.json --public-key ~/.handoff-anchor/anchor.pub\n"
    "keep the key away from whoever can write the log, and the anchors somewhere they cannot change",
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
    kafka_security_options(parser)
    if partitions:
        parser.add_argument(
            "--partitions",
            type=int,
            default=int(os.environ.get("HANDOFF_KAFKA_PARTITIONS") or DEFAULT_PARTITIONS),
            help="with --kafka: partitions of topics this creates (default: $HANDOFF_KAFKA_PARTITIONS or 8)",
        )
        replication.add_arguments(parser)


purge_epilog = (
    "examples:\n"
    "  handoff purge proj-42:refactor --reason 'erasure request #1187' --data-dir ./data\n"
    "  handoff purge proj-42:refactor --reason 'erasure request #1187' --kafka localhost:9092\n"
    "There is no undo. Embedded: beside a running `handoff serve` the request goes through it. Kafka: the\n"
    "worker owning the session decides it; exit 2 on a refusal or when no worker answers within 60 s.\n"
)


def register(commands: Any) -> None:
    """Add the audit subcommands to the CLI's subparsers (their runners are `RUNNERS`)."""
    raw = argparse.RawDescriptionHelpFormatter

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text, epilog=EPILOG[name], formatter_class=raw)  # type: ignore[no-any-return]

    p = add("verify", "check every hash chain and every projection against a fresh fold of the log")
    p.add_argument("--session", metavar="KEY", help="only this session")
    p.add_argument(
        "--jobs",
        type=at_least_one,
        metavar="N",
        help="embedded store: processes that check runs of whole sessions side by side (default: one per core, "
        "at most 4)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--anchor", type=Path, metavar="FILE", help="also check that the log extends this signed anchor")
    p.add_argument("--public-key", type=Path, metavar="FILE", help="with --anchor: the anchor key's anchor.pub")
    _data_dir(p)
    p = add("anchor", "sign a statement of every chain head (sessions, operations log), to check the log against later")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--new-key", type=Path, metavar="DIR", help="write a new key pair: DIR/anchor.key and DIR/anchor.pub"
    )
    what.add_argument("--key", type=Path, metavar="FILE", help="sign with this anchor.key; the anchor goes to stdout")
    _data_dir(p)
    p = add("replay", "rebuild every projection from the log into a fresh store")
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="an empty or new directory")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--until-version", type=at_least_one, metavar="N", help="stop every session after its version N")
    group.add_argument("--until-time", metavar="T", help="only events that occurred at or before T (ISO 8601)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--jobs",
        type=at_least_one,
        metavar="N",
        help="processes that fold shares of a large log side by side, whole sessions each (default: one per core, "
        "at most 4); only for a replay of the whole log",
    )
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
    p = commands.add_parser(
        "purge",
        help="erase a session now: its content becomes unreadable for good, its chain stays verifiable",
        epilog=purge_epilog,
        formatter_class=raw,
    )
    p.add_argument("session", metavar="SESSION", help="the session key")
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (recorded in the log with the operator)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    _data_dir(p)
    p = add("schema", "print the JSON Schema of events and commands")
    p.add_argument("--kind", choices=("all", "events", "command"), default="all")
