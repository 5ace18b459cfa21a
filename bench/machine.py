"""What waking a process costs on this machine: the figure behind most of `bench.kafka`'s.

    python -m bench.machine [--round-trips 2000]

Every step of a command in Kafka mode is a request over loopback TCP that wakes another process:
the adapter's produce, the worker's fetch, each of a transaction's three requests, the reply's
fetch. What one such round trip costs depends less on the code than on the machine: on a virtual
machine a process that went idle may pay far more CPU to be woken than the work it then does. This
measures it with the stack the adapter and the worker use (two Python processes, asyncio streams):
one round trip back to back, and after the caller was idle 1 ms and 5 ms (as a worker is between
transactions at a modest load), in wall time and in the caller's CPU time; and what one idle
``asyncio.sleep(0.001)`` costs. Compare the figures across machines before comparing `bench.kafka`'s.
Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

GAPS = (0.0, 0.001, 0.005)
"""Idle time before each round trip, in seconds."""


@dataclass(frozen=True)
class RoundTrip:
    """One measured case: the caller's idle time before each round trip, and what each cost it."""

    idle_ms: float
    wall_us: float  # the round trip alone, idle time excluded
    cpu_us: float  # the caller's CPU (user + system), idle wake-up included


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _echo_server(ready: Connection) -> None:
    """A child process: an asyncio echo server; sends its port, serves until killed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
        writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


async def _round_trips(port: int, idle: float, count: int) -> RoundTrip:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(50):  # connection and code paths warm
            writer.write(b"x" * 64)
            await reader.readexactly(64)
        spent, cpu0 = 0.0, _cpu()
        for _ in range(count):
            if idle:
                await asyncio.sleep(idle)
            t0 = time.perf_counter()
            writer.write(b"x" * 64)
            await reader.readexactly(64)
            spent += time.perf_counter() - t0
        cpu = _cpu() - cpu0
    finally:
        writer.close()
    return RoundTrip(idle * 1000, spent / count * 1e6, cpu / count * 1e6)


async def _sleep_cost(count: int) -> float:
    """CPU (µs) per idle ``asyncio.sleep(0.001)``."""
    cpu0 = _cpu()
    for _ in range(count):
        await asyncio.sleep(0.001)
    return (_cpu() - cpu0) / count * 1e6


def measure(round_trips: int = 2000) -> tuple[list[RoundTrip], float]:
    """The round trips at each of `GAPS`, and the CPU of one idle millisecond's sleep."""
    ctx = multiprocessing.get_context("spawn")
    port_in, port_out = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_echo_server, args=(port_out,), name="bench-machine-echo", daemon=True)
    server.start()
    try:
        if not port_in.poll(30):
            raise SystemExit("the echo server did not start")
        port = port_in.recv()

        async def run() -> tuple[list[RoundTrip], float]:
            trips = [await _round_trips(port, gap, round_trips) for gap in GAPS]
            return trips, await _sleep_cost(round_trips)

        return asyncio.run(run())
    finally:
        server.kill()
        server.join()


def report(trips: list[RoundTrip], sleep_us: float) -> list[str]:
    """Rows of figures."""
    rows = [
        f"machine   loopback round trip, {'back to back' if t.idle_ms == 0 else f'after {t.idle_ms:g} ms idle':<18}"
        f" {t.wall_us:7.0f} µs wall  {t.cpu_us:7.0f} µs of the caller's CPU"
        for t in trips
    ]
    rows.append(f"machine   asyncio.sleep(0.001), idle            {sleep_us:7.0f} µs of CPU per wake-up")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(prog="python -m bench.machine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=2000, metavar="N", help="per case (default: 2000)")
    ns = parser.parse_args(argv)
    if ns.round_trips < 1:
        parser.error("--round-trips must be at least 1")
    print("\n".join(report(*measure(ns.round_trips))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
