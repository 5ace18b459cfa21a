"""In-process benchmark of the embedded command path: decide + append + project + commit.

    python -m bench.engine [--commands 20000] [--batch 512] [--sessions 16] [--metrics off|on|compare]
                           [--encryption on|off|compare]

Prints commands/s with and without fsync per batch, and the cost of one append and one
request_handoff on a session with 100 entries and with 100,000 entries.

``--metrics on`` runs the engine with the series `handoff serve` adds to it (the business fold of
each committed batch, the store timings); ``compare`` interleaves runs without and with them and
prints both medians and their ratio (the hot-path cost of those series).

``--encryption off`` registers the sessions without a data key, so their content is sealed in the
clear, as before erasure existed; ``compare`` interleaves runs with keys and without and prints the
ratio: what encrypting each entry before it is sealed costs the write path, in the same build.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from handoff.engine.engine import Engine
from handoff.kernel.commands import AppendContext, Command, RegisterSession, RequestHandoff
from handoff.metrics import Metrics
from handoff.observation import instrument_engine
from handoff.storage.kv import RocksKeyValue

CONTENT = "x" * 1024


def _engine(path: str, sync: bool, batch: int, metrics: bool = False, encrypt: bool = True) -> Engine:
    engine = Engine(RocksKeyValue(path), sync=sync, max_batch=batch, encrypt=encrypt)
    if metrics:
        instrument_engine(Metrics(), engine)
    return engine


def throughput(
    commands: int, batch: int, sessions: int, sync: bool, metrics: bool = False, encrypt: bool = True
) -> float:
    """Commands per second through `Engine.write_now` in batches of `batch`."""
    with tempfile.TemporaryDirectory(prefix="handoff-bench-") as path:
        return _throughput(_engine(path, sync, batch, metrics, encrypt), commands, batch, sessions)


def _throughput(engine: Engine, commands: int, batch: int, sessions: int) -> float:
    engine.write_now([RegisterSession(session_key=f"s{i}", agent_from="alice") for i in range(sessions)])
    work: list[Command] = [
        AppendContext(session_key=f"s{i % sessions}", context_type="message", content=CONTENT) for i in range(commands)
    ]
    start = time.perf_counter()
    for i in range(0, commands, batch):
        for result in engine.write_now(work[i : i + batch]):
            assert not isinstance(result, Exception), result
    elapsed = time.perf_counter() - start
    engine.kv.close()  # type: ignore[attr-defined]
    return commands / elapsed


def _grow(engine: Engine, key: str, entries: int) -> None:
    engine.write_now([RegisterSession(session_key=key, agent_from="alice")])
    for start in range(1, entries, 1000):
        n = min(1000, entries - start)
        engine.write_now([AppendContext(session_key=key, context_type="message", content=CONTENT) for _ in range(n)])


def _timed(engine: Engine, make: object, repeat: int) -> float:
    samples = []
    for i in range(repeat):
        command = make(i)  # type: ignore[operator]
        start = time.perf_counter()
        result = engine.write_now([command])[0]
        samples.append(time.perf_counter() - start)
        assert not isinstance(result, Exception), result
    return statistics.median(samples) * 1e6


def history_cost(entries: int, sync: bool) -> tuple[float, float]:
    """Median µs of one append and of one request_handoff on a session with `entries` entries."""
    with tempfile.TemporaryDirectory(prefix="handoff-bench-") as path:
        return _history_cost(_engine(path, sync, 1), entries)


def _history_cost(engine: Engine, entries: int) -> tuple[float, float]:
    _grow(engine, "big", entries)
    # measure the steady state, not the background compaction the bulk load just triggered
    db = engine.kv.db  # type: ignore[attr-defined]
    db.flush()
    db.compact_range(None, None)
    append = _timed(
        engine, lambda i: AppendContext(session_key="big", context_type="message", content=CONTENT), 200
    )
    request = _timed(engine, lambda i: RequestHandoff(session_key="big", target_agent=f"agent-{i}"), 50)
    engine.kv.close()  # type: ignore[attr-defined]
    return append, request


def main() -> None:
    """Run and print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--big", type=int, default=100_000, help="entries in the large session")
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each throughput measurement")
    parser.add_argument("--metrics", choices=("off", "on", "compare"), default="off", help="see above")
    parser.add_argument("--encryption", choices=("on", "off", "compare"), default="on", help="see above")
    args = parser.parse_args()
    if args.metrics == "compare":
        return compare(args, "the business fold and store timings", lambda on: {"metrics": on})
    if args.encryption == "compare":
        return compare(args, "each session's data key (content encrypted)", lambda on: {"encrypt": on})
    on, encrypt = args.metrics == "on", args.encryption == "on"
    print(f"in-process update_context, 1 KiB content, batches of {args.batch}, {args.sessions} sessions")
    print(f"  ({args.runs} runs each: median and best; this machine's neighbours make single runs vary by 30%+)")
    for sync in (False, True):
        rates = sorted(
            throughput(args.commands, args.batch, args.sessions, sync, on, encrypt) for _ in range(args.runs)
        )
        print(f"  fsync per batch={'yes' if sync else 'no ':3}  median {statistics.median(rates):10,.0f}"
              f"  best {rates[-1]:10,.0f} commands/s")
    print("cost per command vs history (median, single-command batches, no fsync)")
    for entries in (100, args.big):
        append, request = history_cost(entries, sync=False)
        print(f"  {entries:>7,} entries: append {append:8.1f} µs   request_handoff {request:8.1f} µs")


def compare(args: argparse.Namespace, what: str, options: Callable[[bool], dict[str, bool]]) -> None:
    """Interleaved runs without and with `what`: medians, best runs and the ratio."""
    print(f"in-process update_context, 1 KiB content, batches of {args.batch}, {args.sessions} sessions:")
    print(f"  without and with {what}, {args.runs} interleaved runs each")
    for sync in (False, True):
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.runs):
            for on in (False, True):
                rates[on].append(throughput(args.commands, args.batch, args.sessions, sync, **options(on)))
        off_median, on_median = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"  fsync per batch={'yes' if sync else 'no ':3}  without: median {off_median:10,.0f}"
              f" best {max(rates[False]):10,.0f}   with: median {on_median:10,.0f} best {max(rates[True]):10,.0f}"
              f"   with/without {on_median / off_median:6.3f}")


if __name__ == "__main__":
    main()
