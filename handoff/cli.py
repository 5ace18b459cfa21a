"""The ``handoff`` command line: parses options, reads the environment, and runs the command.

Every command's options are declared here (the audit commands' in `handoff.audit.arguments`); the
objects a command runs on are built in `handoff.bootstrap`. ``handoff stdio`` imports only what
relaying needs (not the engine, not the MCP SDK): an MCP client gives its first request 10 s before
falling back to an older protocol, and that time also has to cover starting the engine.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from handoff import anchoroptions, authoptions, codebaseoptions, hardenoptions, logs, tokencli
from handoff.audit import arguments as audit_arguments
from handoff.config import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SPAWN_IDLE_EXIT, at_least_one, read_env
from streams import replication
from streams import security as kafka_security

# The worker's defaults, restated so that parsing imports no Kafka client (a unit test keeps them equal):
KAFKA_PARTITIONS = 8  # streams.topics.DEFAULT_PARTITIONS
WORKER_TRANSACTIONS = 4  # streams.worker.WorkerConfig.transactions

EPILOG_SERVE = """examples:
  handoff serve                              # MCP at http://127.0.0.1:8765/mcp, data in the user data dir
  handoff serve --port 0 --data-dir ./data   # a free port; the URL is logged and written to ./data/engine.json
  handoff serve --transport stdio            # one process serving MCP over stdin/stdout
"""

EPILOG_STDIO = """examples:
  handoff stdio                      # what an MCP host launches; shares one engine per data dir
  handoff stdio --data-dir ./data    # e.g. {"command": "handoff", "args": ["stdio", "--data-dir", "./data"]}
"""


def build_parser() -> argparse.ArgumentParser:
    """Options of every command of `handoff` (besides `bench`, whose benchmarks take their own)."""
    parser = argparse.ArgumentParser(
        prog="handoff", description="An event-sourced engine that lets AI agents hand work to each other over MCP."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter
    serve = commands.add_parser(
        "serve", help="run the engine (MCP over streamable HTTP or stdio)", epilog=EPILOG_SERVE, formatter_class=raw
    )
    serve.add_argument("--transport", choices=("http", "stdio"), default="http", help="default: http")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"interface to listen on (default: {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"0 picks a free port (default: {DEFAULT_PORT})")
    serve.add_argument("--data-dir", type=Path, help="default: $HANDOFF_DATA_DIR or the user data dir + /handoff")
    serve.add_argument("--kafka", metavar="BOOTSTRAP", help="Kafka mode (default: $HANDOFF_KAFKA_BOOTSTRAP)")
    kafka_security.add_options(serve)
    serve.add_argument(
        "--idle-exit", type=float, metavar="SECONDS", help="exit after this long without MCP clients (default: never)"
    )
    serve.add_argument(
        "--analytics-url", metavar="URL", help="Kafka mode: the `handoff analytics` app ($HANDOFF_ANALYTICS_URL)"
    )
    authoptions.add_serve_options(serve)
    replication.add_arguments(serve)  # with --kafka: the topics it creates, and what it requires of existing ones
    hardenoptions.add_serve_options(serve)
    codebaseoptions.add_options(serve)
    anchoroptions.add_options(serve)
    _worker_options(commands)
    commands.add_parser("loadtest", help="load an MCP server with the original guide's scenarios (loadtest --help)")
    commands.add_parser("analytics", help="Kafka mode: the faust analytics app (handoff analytics --help)")
    commands.add_parser("kafka", help="Kafka mode operations: handoff kafka check --kafka BOOTSTRAP (--help)")
    commands.add_parser(
        "bench", help=f"benchmarks that print figures: handoff bench {{{','.join(BENCHMARKS)}}} [--help] (from a clone)"
    )
    serve.add_argument(
        "--local-secret",
        action="store_true",
        help="serve only callers that present the data dir's secret (how `handoff stdio` starts its shared engine)",
    )
    stdio = commands.add_parser(
        "stdio",
        help="MCP over stdio, relayed to the data dir's shared engine",
        epilog=EPILOG_STDIO,
        formatter_class=raw,
    )
    stdio.add_argument("--data-dir", type=Path, help="default: $HANDOFF_DATA_DIR or the user data dir + /handoff")
    stdio.add_argument(
        "--idle-exit",
        type=float,
        default=DEFAULT_SPAWN_IDLE_EXIT,
        metavar="SECONDS",
        help=f"how long an engine this starts outlives its last client (default: {DEFAULT_SPAWN_IDLE_EXIT:.0f})",
    )
    codebaseoptions.add_options(stdio)  # passed to the shared engine it starts (one already running keeps its own)
    audit_arguments.register(commands)
    tokencli.register(commands)
    return parser


def _worker_options(commands: Any) -> None:
    """`handoff worker`: where Kafka is, where the worker keeps its stores, where it answers reads."""
    parser = commands.add_parser(
        "worker",
        help="Kafka mode: decide and project some partitions (handoff worker --help)",
        description="A Kafka-mode worker: decides the commands of the partitions it owns, keeps their views, "
        "and answers reads for them. Several workers share the partitions.",
        epilog="example: handoff worker --kafka 127.0.0.1:9092 --data-dir ./w1 --web-port 8800",
    )
    parser.add_argument(
        "--kafka",
        metavar="BOOTSTRAP",
        default=os.environ.get("HANDOFF_KAFKA_BOOTSTRAP"),
        help="Kafka bootstrap servers (default: $HANDOFF_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="this worker's stores, one RocksDB per owned partition; one directory per worker process "
        "(default: $HANDOFF_DATA_DIR or the user data dir + /handoff, then /worker); a lost one, or one "
        "folded from another log, is rebuilt from handoff.events",
    )
    parser.add_argument("--web-host", default="127.0.0.1", help="interface of the query endpoint")
    parser.add_argument(
        "--web-port", type=int, default=0, help="port of the query endpoint, which also serves /metrics (0: a free one)"
    )
    parser.add_argument("--advertised-url", default=None, help="URL other processes reach the endpoint at")
    _worker_group_options(parser)
    kafka_security.add_options(parser)
    anchoroptions.add_options(parser)


def _worker_group_options(parser: argparse.ArgumentParser) -> None:
    """The worker's topics, its name in the group, and how many transactions it keeps open at once."""
    replication.add_arguments(parser)
    parser.add_argument(
        "--partitions",
        type=int,
        default=int(os.environ.get("HANDOFF_KAFKA_PARTITIONS") or KAFKA_PARTITIONS),
        help="partitions of the topics it creates (default: $HANDOFF_KAFKA_PARTITIONS or 8)",
    )
    parser.add_argument(
        "--topic-prefix",
        default=os.environ.get("HANDOFF_KAFKA_TOPIC_PREFIX") or "handoff",
        help="topic names are PREFIX.commands, PREFIX.events, ... (default: $HANDOFF_KAFKA_TOPIC_PREFIX or handoff)",
    )
    parser.add_argument("--worker-id", default=None, help="a stable name for this worker (default: random)")
    parser.add_argument(
        "--transactions",
        type=at_least_one,
        default=WORKER_TRANSACTIONS,
        metavar="N",
        help="partitions whose transactions may be open at once; the others wait and commit bigger batches "
        f"next, which shortens the queue behind the broker under load (default: {WORKER_TRANSACTIONS})",
    )


BENCHMARKS = ("engine", "http", "kafka", "audit", "machine")


def bench(args: list[str]) -> int:
    """`handoff bench NAME [ARGS]`: run ``python -m bench.NAME ARGS`` (the benchmarks live in the repository)."""
    if not args or args[0] not in BENCHMARKS:
        asked = args[:1] in (["-h"], ["--help"])
        usage = f"usage: handoff bench {{{','.join(BENCHMARKS)}}} [ARGS] (each takes --help)"
        print(usage, file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    repo = Path(__file__).resolve().parents[1]  # an editable install from a clone: the repository
    if not (repo / "bench" / "__init__.py").exists():
        print("handoff bench: the benchmarks live in the repository's bench/; install from a clone", file=sys.stderr)
        return 2
    sys.path.insert(0, str(repo))
    sys.argv = [f"handoff bench {args[0]}", *args[1:]]
    try:
        runpy.run_module(f"bench.{args[0]}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``handoff`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    os.umask(0o077)  # data dirs, stores, secrets, logs and exports are the invoking user's alone
    if args[:1] == ["loadtest"]:  # drives any AI Handoff MCP server: its own options, nothing of the engine
        from handoff.loadtest.cli import main as loadtest_main

        return loadtest_main(args[1:])
    if args[:1] == ["analytics"]:  # the faust analytics app has its own composition root and options
        from streams.analytics import main as analytics_main

        return analytics_main(args[1:])
    if args[:1] == ["kafka"]:  # operations on a Kafka deployment, with their own options
        from streams.topiccheck import main as kafka_main

        return kafka_main(args[1:])
    if args[:1] == ["bench"]:  # each benchmark has its own options
        return bench(args[1:])
    ns = build_parser().parse_args(argv)
    env = read_env()
    logs.configure(env.log_level)
    # Each process's composition root is imported only when it runs: each pays for its own imports alone.
    if ns.command == "serve":
        from handoff.bootstrap import serve

        return serve.main(ns, env)
    if ns.command == "stdio":
        from handoff.bootstrap import stdio

        return stdio.main(ns, env)
    if ns.command == "worker":
        from handoff.bootstrap import worker

        return worker.main(ns, env)
    if ns.command == "token":
        return tokencli.run(ns, env)
    from handoff.audit import commands as audit_commands  # only the audit commands pay for their imports

    return audit_commands.guarded(audit_commands.RUNNERS[ns.command])(ns, env)


if __name__ == "__main__":
    sys.exit(main())
