"""The ``handoff`` command line: parses options, reads the environment, and runs ``serve`` or ``stdio``.

``handoff stdio`` imports only what relaying needs (not the engine, not the MCP SDK): an MCP client
gives its first request 10 s before falling back to an older protocol, and that time also has to
cover starting the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.to_thread

from handoff import logs
from handoff.audit import arguments as audit_arguments
from handoff.config import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SPAWN_IDLE_EXIT, DataDir, Env, read_env
from handoff.mcp import launch
from streams import replication

log = logging.getLogger("handoff")

EPILOG_SERVE = """examples:
  handoff serve                              # MCP at http://127.0.0.1:8765/mcp, data in the user data dir
  handoff serve --port 0 --data-dir ./data   # a free port; the URL is logged and written to ./data/engine.json
  handoff serve --transport stdio            # one process serving MCP over stdin/stdout
"""

EPILOG_STDIO = """examples:
  handoff stdio                      # what an MCP host launches; shares one engine per data dir
  handoff stdio --data-dir ./data    # e.g. {"command": "handoff", "args": ["stdio", "--data-dir", "./data"]}
"""


def _parser() -> argparse.ArgumentParser:
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
    serve.add_argument(
        "--idle-exit", type=float, metavar="SECONDS", help="exit after this long without MCP clients (default: never)"
    )
    replication.add_arguments(serve)  # with --kafka: the topics it creates, and what it requires of existing ones
    commands.add_parser("worker", help="Kafka mode: decide and project some partitions (handoff worker --help)")
    commands.add_parser("kafka", help="Kafka mode operations: handoff kafka check --kafka BOOTSTRAP (--help)")
    commands.add_parser(
        "bench", help=f"benchmarks that print figures: handoff bench {{{','.join(BENCHMARKS)}}} [--help] (from a clone)"
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
    audit_arguments.register(commands)
    return parser


def stdio(ns: argparse.Namespace, env: Env) -> int:
    """`handoff stdio`: find or start the shared engine, then relay stdin/stdout to it."""
    data = DataDir(ns.data_dir or env.data_dir)
    try:
        url, lease = launch.ensure_engine(
            data, ns.idle_exit, while_starting=lambda: importlib.import_module("handoff.mcp.relay")
        )
    except (launch.EngineStartError, OSError) as exc:
        log.error("cannot reach an engine", extra={"error": str(exc)})
        return 1
    from handoff.mcp import relay  # already imported while the engine started

    leases = [lease]  # held until this process ends

    async def reconnect() -> str:
        again, more = await anyio.to_thread.run_sync(launch.ensure_engine, data, ns.idle_exit)
        leases.append(more)
        return again

    try:
        asyncio.run(relay.run(url, reconnect))
    except KeyboardInterrupt:
        pass
    for held in leases:
        held.close()
    return 0


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
    if args[:1] == ["worker"]:  # the Kafka worker has its own composition root and options
        from streams.worker import main as worker_main

        return worker_main(args[1:])
    if args[:1] == ["kafka"]:  # operations on a Kafka deployment, with their own options
        from streams.topiccheck import main as kafka_main

        return kafka_main(args[1:])
    if args[:1] == ["bench"]:  # each benchmark has its own options
        return bench(args[1:])
    ns = _parser().parse_args(argv)
    env = read_env()
    logs.configure(env.log_level)
    if ns.command == "serve":
        from handoff.mcp.serve import serve  # the engine and the SDK server: only this command pays for them

        return serve(ns, env)
    if ns.command == "stdio":
        return stdio(ns, env)
    from handoff.audit import commands as audit_commands  # only the audit commands pay for their imports

    return audit_commands.guarded(audit_commands.RUNNERS[ns.command])(ns, env)


if __name__ == "__main__":
    sys.exit(main())
