"""Kafka mode end to end beside the embedded engine: sustained update_context, latency under load, replay.

    python -m bench.kafka [--kafka BOOTSTRAP] [--seconds 8] [--sessions 64] [--concurrency 512] [--at RATE ...]
                          [--partitions 8] [--workers 1] [--transactions N] [--brokers 3 [--rounds 2]]

Without ``--kafka`` it starts a broker with ``compose/kafka-local.sh`` (its own state dir) and stops it
after. One ``handoff worker`` (``--workers N``: N of them) runs as a child process; the submitter is
a `KafkaService` in this process (the same port `serve --kafka` uses, without the MCP layer). The
embedded figures come from the same harness over `EmbeddedService`. Both run with `serve`'s collector
settings (with the interpreter's own, the client's full collections took 20-60 ms every 5-10 s, and up
to 0.75 s each once the 100% load had built a backlog). Figures only; nothing is asserted.

- max: a closed loop of ``--concurrency`` submitters; throughput counts until the last command's
  effect is visible in the projection (the session's version read back through the ReadModel). In
  Kafka mode it follows ``--warmup`` seconds of the same load: a fresh broker compiles its hot paths
  for over a minute (3.1k commands/s in the first 15 s, 4.3-4.9k from about 75 s on), and the
  figures are of the steady state.
- latency: an open loop at 50% and 100% of that maximum; submitted → acknowledged; with the CPU each
  process used meanwhile (broker, worker, this client; the broker's only when the bench started it or
  ``--broker-pid`` names it), in % of one core: a machine that is out of CPU shows there. In Kafka mode an
  acknowledgement carries the event's offset and every read waits for it (read-your-writes), so an
  acknowledged command is visible to the next read.
- replay: every event of the log folded into a fresh RocksDB projection store, as `handoff replay` does
  (in Kafka mode with its default ``--jobs``: one process per core folds a group of partitions).
- ``--brokers 3``: Kafka mode twice, on a single broker (replication factor 1) and on a local three-node
  cluster (factor 3, min.insync.replicas 2, what production runs), alternating ``--rounds`` times so
  that both see the same machine; the rows are labelled rf1 and rf3, followed by the rf3/rf1 ratios.
  Three JVMs share the machine's cores with the worker and this client: compare ratios, not absolutes.
- machine: first, what a loopback round trip and an idle wake-up cost here (`bench.machine`); most of
  Kafka mode's cost per command is such round trips, so compare these before comparing machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from bench.machine import measure as measure_machine
from bench.machine import report as report_machine
from handoff.config import tune_gc_for_serving
from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.errors import HandoffError
from handoff.storage.kv import RocksKeyValue
from streams.client import KafkaService
from streams.security import KafkaSecurity
from streams.topics import Topics

REPO = Path(__file__).resolve().parents[1]
# Against a secured cluster (--kafka): HANDOFF_KAFKA_SECURITY_PROTOCOL etc., which the workers started here inherit.
SECURITY = KafkaSecurity.from_options(None, os.environ)
CONTENT = "x" * 1024


@dataclass
class Figures:
    """One mode's results."""

    max_rate: float = 0.0
    latency: dict[str, tuple[float, float, float, float]] | None = None  # label -> (rate, p50, p95, p99) ms
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> process -> % of one core
    replay_rate: float = 0.0
    replay_events: int = 0


class CpuMeter:
    """CPU time of the processes in a run (Linux /proc), to tell a saturated machine from a slow path."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def sample(self) -> dict[str, float]:
        """CPU seconds each process has used so far (a process that cannot be read is left out)."""
        used: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            used[name] = (int(fields[11]) + int(fields[12])) / self._tick  # utime + stime
        return used

    @staticmethod
    def shares(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
        """Each process's CPU between two samples, in % of one core."""
        return {name: 100 * (after[name] - before[name]) / seconds for name in after if name in before}


def _append(key: str) -> AppendContext:
    return AppendContext(session_key=key, context_type="message", content=CONTENT)


async def _register(svc: Any, keys: list[str]) -> None:
    await asyncio.gather(*(svc.submit(RegisterSession(session_key=k, agent_from="bench")) for k in keys))


async def max_throughput(svc: Any, keys: list[str], seconds: float, concurrency: int) -> float:
    """Closed loop: `concurrency` submitters for `seconds`; commands/s until the last one is visible."""
    sent = dict.fromkeys(keys, 0)
    stop = time.perf_counter() + seconds
    start = time.perf_counter()

    async def lane(i: int) -> None:
        key = keys[i % len(keys)]
        while time.perf_counter() < stop:
            await svc.submit(_append(key))
            sent[key] += 1

    await asyncio.gather(*(lane(i) for i in range(concurrency)))
    for key in keys:  # visible in the projection: the session view counts every appended entry
        view = await svc.session(key)
        assert view is not None and view.version >= sent[key] + 1, (key, view, sent[key])
    return sum(sent.values()) / (time.perf_counter() - start)


async def open_loop(svc: Any, keys: list[str], rate: float, seconds: float) -> tuple[float, float, float, float]:
    """Submit at `rate`/s for `seconds` regardless of answers; (achieved rate, p50, p95, p99) in ms."""
    latencies: list[float] = []
    errors = 0

    async def one(key: str) -> None:
        nonlocal errors
        t0 = time.perf_counter()
        try:
            await svc.submit(_append(key))
        except HandoffError:
            errors += 1
            return
        latencies.append(time.perf_counter() - t0)

    # Only unfinished submissions are kept: holding every finished task (four objects the collector tracks
    # each) made the client's full collections pause it for 90-130 ms a few times a run, inflating p99.
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(keys[i % len(keys)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    if errors:
        print(f"    ({errors} commands refused)", file=sys.stderr)
    return len(latencies) / elapsed, pct(0.50), pct(0.95), pct(0.99)


async def measure(
    svc: Any, seconds: float, sessions: int, concurrency: int, rates: tuple[float, ...] = (), warmup: float = 1.0,
    meter: CpuMeter | None = None,
) -> Figures:  # fmt: skip
    """Max throughput, then latency at 50% and 100% of it, and at each fixed rate of `rates` (comparable)."""
    keys = [f"b-{uuid.uuid4().hex[:8]}-{i}" for i in range(sessions)]
    await _register(svc, keys)
    await max_throughput(svc, keys, warmup, concurrency)  # a fresh broker's JIT needs over a minute, not seconds
    figures = Figures(max_rate=await max_throughput(svc, keys, seconds, concurrency))
    figures.latency = {}
    loads = [("50%", figures.max_rate * 0.5), ("100%", figures.max_rate), *((f"{r:g}/s", r) for r in rates)]
    for label, rate in loads:
        before, started = (meter.sample() if meter else {}), time.perf_counter()
        figures.latency[label] = await open_loop(svc, keys, rate, seconds)
        if meter is not None:
            figures.cpu[label] = meter.shares(before, meter.sample(), time.perf_counter() - started)
    return figures


def replay_kafka(bootstrap: str, topics: Topics) -> tuple[int, float]:
    """``handoff replay --kafka``: every event of the events topic folded into a fresh RocksDB store."""
    from handoff.audit.kafka import replay_kafka as replay_topic
    from handoff.audit.parallel import default_jobs

    with tempfile.TemporaryDirectory(prefix="handoff-bench-replay-") as scratch:
        target = RocksKeyValue(scratch, bulk=True)
        result = replay_topic(
            bootstrap, topics.prefix, target, quiet=True, jobs=default_jobs(), security=SECURITY
        )
        target.close()
    return result.events, result.rate


def replay_embedded(kv: RocksKeyValue) -> tuple[int, float]:
    """``handoff replay``: every event of the embedded log folded into a fresh RocksDB store."""
    from handoff.audit.replay import replay

    with tempfile.TemporaryDirectory(prefix="handoff-bench-replay-") as scratch:
        target = RocksKeyValue(scratch, bulk=True)
        result = replay(kv, target, quiet=True)
        target.close()
    return result.events, result.rate


# -- the two modes ------------------------------------------------------------------------------------


def run_embedded(ns: argparse.Namespace) -> Figures:
    """The embedded engine, same harness; its store is removed after."""
    with tempfile.TemporaryDirectory(prefix="handoff-bench-embedded-") as path:
        kv = RocksKeyValue(path)

        async def main() -> Figures:
            engine = Engine(kv)
            await engine.start()
            tune_gc_for_serving()  # as `handoff serve` runs
            try:
                meter = CpuMeter({"engine+client": os.getpid()})
                return await measure(
                    EmbeddedService(engine), ns.seconds, ns.sessions, ns.concurrency, tuple(ns.at), meter=meter
                )
            finally:
                await engine.stop()

        figures = asyncio.run(main())
        figures.replay_events, figures.replay_rate = replay_embedded(kv)
        kv.close()
    return figures


@asynccontextmanager
async def _worker(bootstrap: str, topics: Topics, data_dir: Path, *extra: str) -> AsyncIterator[int]:
    cmd = [
        sys.executable, "-m", "handoff", "worker", "--kafka", bootstrap, "--data-dir", str(data_dir),
        "--topic-prefix", topics.prefix, "--partitions", str(topics.partitions), *extra,
    ]  # fmt: skip
    log = open(data_dir.with_suffix(".log"), "ab")  # kept open for the child's lifetime
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def run_kafka(bootstrap: str, ns: argparse.Namespace, broker_pids: dict[str, int | None] | None = None) -> Figures:
    """Kafka mode with one worker process (or `ns.workers`).

    Its topics are deleted and the workers' stores removed after a run (a run writes gigabytes);
    after a failure the workers' logs are kept and named.
    """
    topics = Topics(f"bench{uuid.uuid4().hex[:6]}", ns.partitions)
    root = Path(tempfile.mkdtemp(prefix="handoff-bench-kafka-"))

    async def main() -> Figures:
        extra = ["--transactions", str(ns.transactions)] if ns.transactions else []
        async with contextlib.AsyncExitStack() as stack:
            names = ["worker"] if ns.workers == 1 else [f"worker{i + 1}" for i in range(ns.workers)]
            pids = {}
            for name in names:
                pids[name] = await stack.enter_async_context(_worker(bootstrap, topics, root / name, *extra))
            meter = CpuMeter({**(broker_pids or {}), **pids, "client": os.getpid()})
            svc = KafkaService(bootstrap, topics=topics, timeout=30, security=SECURITY)
            await svc.start()
            tune_gc_for_serving()  # as `handoff serve --kafka` runs
            try:
                deadline = time.monotonic() + 60
                while not await svc.ready():
                    if time.monotonic() > deadline:
                        raise SystemExit(f"no worker became ready; see the logs in {root}")
                    await asyncio.sleep(0.2)
                return await measure(svc, ns.seconds, ns.sessions, ns.concurrency, tuple(ns.at), ns.warmup, meter)
            finally:
                await svc.stop()

    figures = asyncio.run(main())
    figures.replay_events, figures.replay_rate = replay_kafka(bootstrap, topics)
    asyncio.run(_delete_topics(bootstrap, topics))
    shutil.rmtree(root, ignore_errors=True)
    return figures


async def _delete_topics(bootstrap: str, topics: Topics) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **SECURITY.client_kwargs())
    await admin.start()
    try:
        await admin.delete_topics([spec.name for spec in topics.specs()])
    finally:
        await admin.close()


def _local_broker() -> tuple[str, int | None, Callable[[], None]]:
    """A broker of our own: its bootstrap address, its pid (to meter its CPU), and how to stop it."""
    script = REPO / "compose" / "kafka-local.sh"
    state = tempfile.mkdtemp(prefix="handoff-bench-broker-")
    env = dict(os.environ, HANDOFF_KAFKA_DIR=state)
    try:
        done = subprocess.run([str(script), "start"], env=env, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(state, ignore_errors=True)
        raise SystemExit(f"the local broker did not start:\n{exc.stderr[-3000:]}") from exc
    try:
        pid: int | None = int((Path(state) / "kafka.pid").read_text())
    except (OSError, ValueError):
        pid = None

    def stop() -> None:  # and remove its data: a run writes gigabytes
        subprocess.run([str(script), "stop"], env=env, check=False)
        shutil.rmtree(state, ignore_errors=True)

    return done.stdout.strip().splitlines()[-1], pid, stop


def _local_cluster() -> tuple[str, dict[str, int | None], Callable[[], None]]:
    """A three-node cluster of our own (compose/kafka-local.sh start --brokers 3), as `_local_broker`."""
    script = REPO / "compose" / "kafka-local.sh"
    state = tempfile.mkdtemp(prefix="handoff-bench-cluster-")
    env = dict(os.environ, HANDOFF_KAFKA_DIR=state)
    try:
        done = subprocess.run([str(script), "start", "--brokers", "3"], env=env, capture_output=True, text=True,
                              check=True)  # fmt: skip
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(state, ignore_errors=True)
        raise SystemExit(f"the local cluster did not start:\n{exc.stderr[-3000:]}") from exc
    pids: dict[str, int | None] = {}
    for node in (1, 2, 3):
        try:
            pids[f"broker{node}"] = int((Path(state) / f"node{node}" / "kafka.pid").read_text())
        except (OSError, ValueError):
            pids[f"broker{node}"] = None

    def stop() -> None:
        subprocess.run([str(script), "stop"], env=env, check=False)
        shutil.rmtree(state, ignore_errors=True)

    return done.stdout.strip().splitlines()[-1], pids, stop


def run_replicated(ns: argparse.Namespace) -> list[str]:
    """RF 1 on a single broker and RF 3 on a three-node cluster, interleaved `ns.rounds` times; rows + ratios."""
    single, single_pid, stop_single = _local_broker()
    try:
        cluster, cluster_pids, stop_cluster = _local_cluster()
        try:
            runs: dict[str, list[Figures]] = {"rf1": [], "rf3": []}
            for _ in range(ns.rounds):
                runs["rf1"].append(run_kafka(single, ns, {"broker": single_pid}))
                runs["rf3"].append(run_kafka(cluster, ns, cluster_pids))
        finally:
            stop_cluster()
    finally:
        stop_single()
    rows = [row for name, figures in runs.items() for f in figures for row in report(name, f)]
    return rows + ratios(runs["rf1"], runs["rf3"])


def ratios(base: list[Figures], other: list[Figures]) -> list[str]:
    """rf3 / rf1 of the medians over the rounds: throughput, p50 and p99 at each load, replay."""

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2] if ordered else float("nan")

    def ratio(pick: Callable[[Figures], float]) -> float:
        below = median([pick(f) for f in base])
        return median([pick(f) for f in other]) / below if below else float("nan")

    throughput, replay = ratio(lambda f: f.max_rate), ratio(lambda f: f.replay_rate)
    rows = [f"rf3/rf1   max throughput x{throughput:.2f}, replay x{replay:.2f}"]
    for label in (base[0].latency or {}) if base else ():
        p50, p99 = (ratio(functools.partial(_latency, label=label, index=i)) for i in (1, 3))
        rows.append(f"rf3/rf1   at {label:>6}: p50 x{p50:.2f}  p99 x{p99:.2f}")
    return rows


def _latency(f: Figures, *, label: str, index: int) -> float:
    return (f.latency or {})[label][index]


def _nothing() -> None:
    return None


def report(name: str, f: Figures) -> list[str]:
    """Rows of the figures table."""
    rows = [f"{name:<9} max {f.max_rate:>8,.0f} commands/s (end to end, visible in the projection)"]
    for label, (rate, p50, p95, p99) in (f.latency or {}).items():
        cpu = "  ".join(f"{who} {share:.0f}%" for who, share in f.cpu.get(label, {}).items())
        rows.append(
            f"{name:<9} at {label:>6}: {rate:>8,.0f}/s  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms"
            + (f"  | CPU of one core: {cpu}" if cpu else "")
        )
    rows.append(f"{name:<9} replay {f.replay_rate:>8,.0f} events/s ({f.replay_events} events into fresh projections)")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run both modes and print the figures side by side."""
    parser = argparse.ArgumentParser(prog="python -m bench.kafka", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kafka", metavar="BOOTSTRAP", help="default: start a local broker for the run")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--warmup", type=float, default=90.0, metavar="SECONDS",
        help="Kafka mode: load before measuring; a fresh broker is steady after about 75 s (default: 90)",
    )  # fmt: skip
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=512)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--skip-kafka", action="store_true", help="measure the embedded engine only (no broker)")
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="Kafka mode: worker processes sharing the partitions"
    )
    parser.add_argument("--transactions", type=int, metavar="N", help="the worker's --transactions (default: its own)")
    parser.add_argument("--broker-pid", type=int, metavar="PID", help="with --kafka: a local broker's pid (its CPU)")
    parser.add_argument(
        "--brokers", type=int, choices=(1, 3), default=1,
        help="3: Kafka mode on a local single broker (RF 1) and on a local three-node cluster (RF 3, min ISR 2)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="with --brokers 3: interleaved runs of each (default: 2)")
    parser.add_argument(
        "--at", type=float, action="append", default=[], metavar="RATE",
        help="also measure latency at this fixed rate (commands/s; repeatable), comparable across runs",
    )  # fmt: skip
    ns = parser.parse_args(argv)
    if ns.skip_embedded and ns.skip_kafka:
        parser.error("--skip-embedded and --skip-kafka leave nothing to measure")
    if ns.brokers == 3 and (ns.kafka or ns.skip_kafka):
        parser.error("--brokers 3 starts its own single broker and cluster: not with --kafka or --skip-kafka")
    rows: list[str] = report_machine(*measure_machine()) if not ns.skip_kafka else []
    if ns.brokers == 3:
        rows += run_replicated(ns)
    elif not ns.skip_kafka:
        bootstrap, broker_pid, stop = (ns.kafka, ns.broker_pid, _nothing) if ns.kafka else _local_broker()
        try:
            kafka = run_kafka(bootstrap, ns, {"broker": broker_pid})
        finally:
            stop()
        rows += report("kafka", kafka)
    if not ns.skip_embedded:
        rows += report("embedded", run_embedded(ns))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
