"""Expiry of many due sessions at once on the embedded engine, and what it does to the writes beside it.

    python -m bench.expiry [--sessions 100000] [--page 100]

Registers `--sessions` short-policy sessions, moves the engine's clock 4 hours on, and sweeps until
nothing is due, while one client appends to another session every 5 ms; prints the sweep's time and
the latency of those appends during it (fsynced writes, as `handoff serve` makes them).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta

from handoff.engine.engine import Engine
from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.times import format_time
from handoff.storage.kv import RocksKeyValue


class _Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> str:
        return format_time(self.at)


async def _run(path: str, sessions: int, page: int) -> str:
    kv = RocksKeyValue(path)
    clock = _Clock()
    engine = Engine(kv, sync_log=kv.sync_log, clock=clock)
    for i in range(0, sessions, 2000):
        keys = range(i, min(sessions, i + 2000))
        engine.write_now([RegisterSession(session_key=f"s{j}", agent_from="a", retention_policy="short") for j in keys])
    engine.write_now([RegisterSession(session_key="live", agent_from="a", retention_policy="extended")])
    engine.sweeper.page = page
    await engine.start()
    clock.at += timedelta(hours=4)
    latencies: list[float] = []
    done = asyncio.Event()

    async def writer() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await engine.submit(AppendContext(session_key="live", context_type="message", content="x" * 200))
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.005)

    task = asyncio.create_task(writer())
    start = time.perf_counter()
    while await engine.sweeper.sweep():
        pass
    elapsed = time.perf_counter() - start
    done.set()
    await task
    await engine.stop()
    kv.close()
    lat = sorted(latencies)
    return (
        f"expired {engine.sweeper.expired} of {sessions} sessions in {elapsed:.1f} s (page {page}); "
        f"{len(lat)} appends during the sweep: p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
        f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms"
    )


def main() -> None:
    """Run the benchmark once and print its line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=100)
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="handoff-bench-") as path:
        print(asyncio.run(_run(path, ns.sessions, ns.page)))


if __name__ == "__main__":
    main()
