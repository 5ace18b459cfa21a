"""Figures of a load test, computed from its recorded calls: throughput, percentiles, error rate, timeline."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PERCENTILES = (50.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call as the load tester saw it."""

    scenario: str
    tool: str
    started: float  # seconds since the run started
    seconds: float  # latency
    error: str | None  # None, a tool error code, or the transport error's class name


def percentile(ordered: Sequence[float], p: float) -> float:
    """The p-th percentile of sorted values, nearest-rank (0.0 for no values)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_ms(calls: Iterable[Call]) -> dict[str, float]:
    """p50, p95, p99, mean and max of the calls' latencies, in milliseconds."""
    ordered = sorted(c.seconds for c in calls)
    figures = {f"p{p:g}": round(percentile(ordered, p) * 1000, 3) for p in PERCENTILES}
    figures["mean"] = round(sum(ordered) / len(ordered) * 1000, 3) if ordered else 0.0
    figures["max"] = round(ordered[-1] * 1000, 3) if ordered else 0.0
    return figures


def summary(calls: Sequence[Call], seconds: float) -> dict[str, Any]:
    """Counts, throughput (calls per second of wall time), error rate and latency of a group of calls."""
    errors = sum(1 for c in calls if c.error is not None)
    return {
        "calls": len(calls),
        "errors": errors,
        "errorRate": errors / len(calls) if calls else 0.0,
        "throughput": len(calls) / seconds if seconds > 0 else 0.0,
        "latencyMs": latency_ms(calls),
    }


def by_tool(calls: Sequence[Call], seconds: float) -> dict[str, dict[str, Any]]:
    """The summary of each tool's calls."""
    tools: dict[str, list[Call]] = {}
    for call in calls:
        tools.setdefault(call.tool, []).append(call)
    return {tool: summary(group, seconds) for tool, group in sorted(tools.items())}


def error_codes(calls: Iterable[Call]) -> dict[str, int]:
    """How often each error occurred."""
    return dict(Counter(c.error for c in calls if c.error is not None).most_common())


def timeline(calls: Sequence[Call], seconds: float) -> list[dict[str, float]]:
    """Calls per second, errors per second, and p50/p95/p99 latency in ms, for slices of the run.

    About sixty slices of at least half a second; the last one takes the remainder, so a run of 3.02 s
    does not end in a slice of 20 ms that looks like the throughput fell to nothing.
    """
    step = max(0.5, seconds / 60)
    count = max(1, round(seconds / step))
    buckets: list[list[Call]] = [[] for _ in range(count)]
    for call in calls:
        buckets[min(int(call.started / step), count - 1)].append(call)
    points = []
    for i, bucket in enumerate(buckets):
        width = step if i < count - 1 else max(seconds - i * step, 1e-9)
        ordered = sorted(c.seconds for c in bucket)
        point = {"t": round(i * step, 3), "throughput": round(len(bucket) / width, 3)}
        point["errors"] = round(sum(1 for c in bucket if c.error is not None) / width, 3)
        point |= {f"p{p:g}": round(percentile(ordered, p) * 1000, 3) for p in PERCENTILES}
        points.append(point)
    return points


def distribution(calls: Iterable[Call], points: int = 101) -> list[tuple[float, float]]:
    """(percentile, latency in ms) pairs from p0 to p100, denser towards the tail (for the percentile chart)."""
    ordered = sorted(c.seconds for c in calls)
    if not ordered:
        return []
    out = []
    for i in range(points):
        # 100 * (1 - 10^-k) spreads the points over p0..p99.99: the tail is where latency lives.
        k = 4.0 * i / (points - 1)
        p = 100.0 * (1.0 - 10.0**-k) if i < points - 1 else 100.0
        out.append((round(p, 4), round(percentile(ordered, max(p, 1e-9)) * 1000, 3)))
    return out
