"""``handoff loadtest URL`` / ``handoff loadtest -- CMD ARGS``: options, the run, and where the reports go."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import anyio

from handoff.loadtest import html, multi, report
from handoff.loadtest.progress import Progress
from handoff.loadtest.runner import LoadTestError, Options, run
from handoff.loadtest.scenarios import SCENARIOS

EPILOG = """scenarios (the original performance guide's):
  sequential      one client appends to its own session, one call after another
  own-sessions    N clients, each appending to its own session
  shared-session  N clients appending to one session
  handoffs        each client grows its session's history and hands it on (request, accept, complete)
  mix             the default: the clients split over own-sessions, shared-session and handoffs, at once
  all             each scenario in turn, --seconds each

examples:
  handoff loadtest http://127.0.0.1:8765/mcp --clients 16 --seconds 20 --html report.html
  handoff loadtest --scenario all --json http://127.0.0.1:8765/mcp > report.json
  handoff loadtest --clients 4 -- handoff stdio --data-dir ./data      # one stdio server process per client
  handoff loadtest --pid 4242 http://127.0.0.1:3000/mcp                 # the original server, its CPU and memory
  handoff loadtest --processes 4 --clients 64 http://127.0.0.1:8765/mcp  # when one client process is the limit

The server's CPU and memory are reported when it runs on this machine: --pid, else the process_*
series of the URL's /metrics, else the process listening on the URL's port.
"""


def parser() -> argparse.ArgumentParser:
    """The options of ``handoff loadtest``."""
    p = argparse.ArgumentParser(
        prog="handoff loadtest",
        description="Load any MCP server that speaks the AI Handoff tools, over HTTP (URL) or stdio (-- CMD ARGS).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", nargs="?", help="the server's streamable HTTP endpoint, e.g. http://127.0.0.1:8765/mcp")
    p.add_argument("--clients", type=positive_int, default=8, metavar="N", help="concurrent clients (default: 8)")
    p.add_argument("--seconds", type=positive_float, default=10.0, metavar="S", help="per phase (default: 10)")
    p.add_argument("--scenario", choices=("mix", "all", *SCENARIOS), default="mix", help="default: mix")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML report with charts")
    p.add_argument("--pid", type=int, help="the server's process id, for its CPU and memory")
    p.add_argument("--metrics-url", help="a Prometheus /metrics with the server's process_* series")
    p.add_argument("--legacy", action="store_true", help="use the initialize handshake (no protocol probe)")
    p.add_argument("--server-log", type=Path, metavar="FILE", help="stdio: the servers' stderr (default: discarded)")
    p.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        metavar="P",
        help="spread the clients over P load-tester processes (default: 1; one saturates a core at a few hundred "
        "calls/s over HTTP)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--child", help=argparse.SUPPRESS)  # RUN:OFFSET:COUNT, a process of --processes
    return p


def positive_int(text: str) -> int:
    """An argparse type: an integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def main(argv: Sequence[str]) -> int:
    """Run ``handoff loadtest``; 0 when the run completed, 1 when it could not run, 2 for bad usage."""
    args = list(argv)
    command = args[args.index("--") + 1 :] if "--" in args else None
    ns = parser().parse_args(args[: args.index("--")] if "--" in args else args)
    if (ns.url is None) == (command is None) or command == []:
        parser().error("give either a URL or -- CMD ARGS")
    with ExitStack() as stack:
        log = stack.enter_context(open(ns.server_log or "/dev/null", "a"))
        options = Options(
            url=ns.url,
            command=command,
            clients=ns.clients,
            seconds=ns.seconds,
            scenario=ns.scenario,
            mode="legacy" if ns.legacy else "auto",
            pid=ns.pid,
            metrics_url=ns.metrics_url,
            server_log=log,
            processes=min(ns.processes, ns.clients),
        )
        try:
            if ns.child is not None:
                anyio.run(multi.child, options, ns.child)
                return 0
            runner = multi.run_many if options.processes > 1 else run
            outcome = anyio.run(runner, options, Progress(quiet=ns.quiet))
        except LoadTestError as exc:
            print(f"handoff loadtest: {exc}", file=sys.stderr)
            return 1
    document = report.build(outcome)
    if ns.html is not None:
        server = report.server_line(document["server"], document["transport"])
        page = html.render(document, server, report.client_line(document["client"]))
        ns.html.write_text(page, encoding="utf-8")
    print(json.dumps(document, indent=2) if ns.json else report.text(document))
    return 0
