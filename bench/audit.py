"""Benchmark of `verify` and `replay` over a large embedded log: events/s and peak memory.

    python -m bench.audit [--events 1000000] [--sessions 1000] [--dir DIR]

Builds the store once (kept in --dir for reruns), then runs verify and replay, each in one process and
with one process per core (the commands' default), each in a fresh child process so that the peak
resident memory reported is theirs alone (the parallel runs' own children are not counted).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path

from handoff.engine.engine import Engine
from handoff.kernel.commands import AppendContext, Command, RegisterSession
from handoff.storage.kv import RocksKeyValue

CONTENT = "The agent looked at the failing test and decided to change the retry policy. " * 3


def build(path: Path, events: int, sessions: int) -> float:
    """Write `events` events over `sessions` sessions; returns seconds taken."""
    engine = Engine(RocksKeyValue(str(path)), sync=False)
    start = time.perf_counter()
    engine.write_now([RegisterSession(session_key=f"s{i:05d}", agent_from=f"agent-{i % 7}") for i in range(sessions)])
    written, batch = sessions, 2000
    while written < events:
        n = min(batch, events - written)
        work: list[Command] = [
            AppendContext(session_key=f"s{(written + j) % sessions:05d}", context_type="message", content=CONTENT)
            for j in range(n)
        ]
        engine.write_now(work)
        written += n
        if written % 100_000 < batch:
            print(f"  built {written:,} events", flush=True)
    engine.kv.close()  # type: ignore[attr-defined]
    return time.perf_counter() - start


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's VmHWM belongs to the process image, so a spawned child does not report the parent's peak:
    ``ru_maxrss`` survives the child's exec and, in a run that had just built the store, gave the
    builder's 148-164 MB for both children.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: the older measure


def _verify(path: str, out: dict[str, float], jobs: int = 1) -> None:
    from handoff.audit.parallel import verify_store

    kv = RocksKeyValue(path)
    report = verify_store(kv, jobs=jobs, scratch=Path(path).parent, quiet=True)
    out.update(events=report.events, seconds=report.seconds, ok=float(report.ok))
    out["rss_mb"] = _peak_rss_mb()


def _replay(path: str, out: dict[str, float], jobs: int = 1) -> None:
    from handoff.audit.parallel import replay_store

    target = tempfile.mkdtemp(dir=Path(path).parent)
    result = replay_store(RocksKeyValue(path), RocksKeyValue(target, bulk=True), jobs=jobs, quiet=True)
    shutil.rmtree(target, ignore_errors=True)
    out.update(events=result.events, seconds=result.seconds, digest_seconds=result.digest_seconds, ok=1.0)
    out["rss_mb"] = _peak_rss_mb()


def _verify_parallel(path: str, out: dict[str, float]) -> None:
    from handoff.audit.parallel import default_jobs

    _verify(path, out, jobs=default_jobs())


def _replay_parallel(path: str, out: dict[str, float]) -> None:
    from handoff.audit.parallel import default_jobs

    _replay(path, out, jobs=default_jobs())


def _in_child(target: object, path: Path) -> dict[str, float]:
    with multiprocessing.Manager() as manager:
        out = manager.dict()
        proc = multiprocessing.get_context("spawn").Process(target=target, args=(str(path), out))
        proc.start()
        proc.join()
        return dict(out)


def main() -> None:
    """Build if needed, then measure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "handoff-bench-audit")
    args = parser.parse_args()
    store = args.dir / f"db-{args.events}-{args.sessions}"
    if not store.exists():
        print(f"building {args.events:,} events over {args.sessions:,} sessions in {store}")
        print(f"  built in {build(store, args.events, args.sessions):.0f}s")
    from handoff.audit.parallel import default_jobs

    jobs = default_jobs()
    steps = (
        ("verify", _verify), (f"verify --jobs {jobs}", _verify_parallel),
        ("replay", _replay), (f"replay --jobs {jobs}", _replay_parallel),
    )  # fmt: skip
    for name, fn in steps:
        out = _in_child(fn, store)
        rate = out["events"] / max(out["seconds"], 1e-9)
        print(
            f"{name}: {int(out['events']):,} events in {out['seconds']:.1f}s = {rate:,.0f} events/s, "
            f"peak RSS {out['rss_mb']:.0f} MB, ok={bool(out['ok'])}"
        )
        if "digest_seconds" in out:  # the command's final step, after the fold the rate above counts
            total = out["events"] / (out["seconds"] + out["digest_seconds"])
            print(f"  then the views digest in {out['digest_seconds']:.1f}s: {total:,.0f} events/s in all")


if __name__ == "__main__":
    main()
