"""A known workload over MCP, and what `/metrics` must show after it (CONTRACT §10), for both modes.

Five sessions, twelve appends, seven handoffs with given outcomes:

    s0  full_handoff to b, accepted and completed (s0 completes)
    s1  context_transfer to b, rejected; context_transfer to c, accepted (c now holds s1)
    s2  collaboration to d, cancelled by its requester; context_transfer to e, left pending
    s3  registered and closed
    s4  collaboration to f and full_handoff to g, each with ``acceptWithin: 1``, never answered: expired

s0-s2 each get two message entries, one decision and one file.

The two handoffs of s4 expire by the deployment's own sweeper (the engine's, or the worker's that
owns s4's partition), which runs every `SWEEP_EVERY` seconds: they are requested first, and a test
waits up to `EXPIRY_DEADLINE` for the counters. s4 itself stays active: a handoff that expires does
not expire its session.

No session can fall idle for its retention within a test (the shortest is 4 hours), so before the
workload each test imports `aged_log` (``handoff import``): one session last written 5 hours ago
under the ``short`` policy, its context_transfer to h still pending. The first sweep expires it,
and its pending handoff with it. Imported events are not this process's writes: the counters count
only the expiry (one handoff expired), the gauges, rebuilt from the views, count the session.
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from handoff.audit.transfer import export_lines
from handoff.engine.engine import Engine
from handoff.engine.sweeper import SWEEP_EVERY
from handoff.kernel.commands import RegisterSession, RequestHandoff
from handoff.kernel.times import format_time
from handoff.storage.kv import InMemoryKeyValue
from integration.harness import ok

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

EXPIRY_DEADLINE = SWEEP_EVERY + 60.0  # the next sweep after the handoffs fell due, on a loaded machine

EXPECTED_COUNTERS: Samples = {
    ("handoff_sessions_registered_total", ()): 5,
    # entries as get_context shows them: every registration and every handoff request adds a system entry
    ("handoff_context_entries_total", (("context_type", "system"),)): 5 + 7,
    ("handoff_context_entries_total", (("context_type", "message"),)): 6,
    ("handoff_context_entries_total", (("context_type", "decision"),)): 3,
    ("handoff_context_entries_total", (("context_type", "file"),)): 3,
    ("handoff_context_entries_total", (("context_type", "task"),)): 0,
    ("handoff_context_entries_total", (("context_type", "tool_call"),)): 0,
    ("handoff_handoffs_total", (("outcome", "requested"), ("request_type", "full_handoff"))): 2,
    ("handoff_handoffs_total", (("outcome", "accepted"), ("request_type", "full_handoff"))): 1,
    ("handoff_handoffs_total", (("outcome", "completed"), ("request_type", "full_handoff"))): 1,
    ("handoff_handoffs_total", (("outcome", "expired"), ("request_type", "full_handoff"))): 1,
    ("handoff_handoffs_total", (("outcome", "requested"), ("request_type", "context_transfer"))): 3,
    ("handoff_handoffs_total", (("outcome", "rejected"), ("request_type", "context_transfer"))): 1,
    ("handoff_handoffs_total", (("outcome", "accepted"), ("request_type", "context_transfer"))): 1,
    ("handoff_handoffs_total", (("outcome", "completed"), ("request_type", "context_transfer"))): 0,
    ("handoff_handoffs_total", (("outcome", "expired"), ("request_type", "context_transfer"))): 1,  # the aged one
    ("handoff_handoffs_total", (("outcome", "requested"), ("request_type", "collaboration"))): 2,
    ("handoff_handoffs_total", (("outcome", "cancelled"), ("request_type", "collaboration"))): 1,
    ("handoff_handoffs_total", (("outcome", "expired"), ("request_type", "collaboration"))): 1,
}
EXPECTED_GAUGES: Samples = {
    ("handoff_sessions", (("status", "active"),)): 3,
    ("handoff_sessions", (("status", "completed"),)): 1,
    ("handoff_sessions", (("status", "closed"),)): 1,
    ("handoff_sessions", (("status", "expired"),)): 1,  # the aged session
    ("handoff_handoffs_pending", ()): 1,
}
HANDOFF_HISTOGRAMS = {"handoff_handoff_accept_seconds": 2, "handoff_handoff_complete_seconds": 1}
TIMING_HISTOGRAMS = ("handoff_store_read_seconds", "handoff_store_write_seconds", "handoff_log_sync_seconds")


def aged_log(path: Path) -> Path:
    """Write the aged session's events (see the module docstring) as an export file at `path`; return it."""
    kv = InMemoryKeyValue()
    engine = Engine(kv, sync=False, clock=lambda: format_time(datetime.now(UTC) - timedelta(hours=5)))
    results = engine.write_now([
        RegisterSession(session_key="aged-0", agent_from="old", retention_policy="short"),
        RequestHandoff(session_key="aged-0", target_agent="h", request_type="context_transfer"),
    ])  # fmt: skip
    assert not [r for r in results if isinstance(r, Exception)], results
    path.write_bytes(b"".join(line + b"\n" for line in export_lines(kv)))
    return path


async def drive(client: Client, prefix: str) -> None:
    """Run the workload on sessions ``<prefix>-0`` … ``<prefix>-4`` (the expiries follow within a sweep)."""
    keys = [f"{prefix}-{i}" for i in range(5)]
    for key in keys:
        await ok(client, "register_session", {"sessionKey": key, "agentFrom": "a"})
    for target, request_type in (("f", "collaboration"), ("g", "full_handoff")):  # first: they fall due soonest
        args = {"sessionKey": keys[4], "targetAgent": target, "requestType": request_type, "acceptWithin": 1}
        await ok(client, "request_handoff", args)
    for key in keys[:3]:
        for content_type, content in (("message", "m1"), ("message", "m2"), ("decision", "d"), ("file", "f.py")):
            await ok(client, "update_context", {"sessionKey": key, "contextType": content_type, "content": content})

    async def request(key: str, target: str, request_type: str) -> str:
        args = {"sessionKey": key, "targetAgent": target, "requestType": request_type}
        return str((await ok(client, "request_handoff", args))["handoff"]["handoffId"])

    full = await request(keys[0], "b", "full_handoff")
    await ok(client, "accept_handoff", {"handoffId": full, "agent": "b"})
    await ok(client, "complete_handoff", {"handoffId": full, "agent": "b"})
    rejected = await request(keys[1], "b", "context_transfer")
    await ok(client, "reject_handoff", {"handoffId": rejected, "agent": "b", "reason": "busy"})
    accepted = await request(keys[1], "c", "context_transfer")
    await ok(client, "accept_handoff", {"handoffId": accepted, "agent": "c"})
    cancelled = await request(keys[2], "d", "collaboration")
    await ok(client, "cancel_handoff", {"handoffId": cancelled, "agent": "a"})
    await request(keys[2], "e", "context_transfer")
    await ok(client, "close_session", {"sessionKey": keys[3], "agent": "a"})


def scrape(url: str) -> tuple[Samples, dict[str, str]]:
    """The samples of a /metrics endpoint, parsed by prometheus_client's own parser (which rejects bad exposition),
    and the type of each family."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def summed(*scrapes: Samples) -> Samples:
    """Samples of several processes added up (the adapter and the workers of Kafka mode)."""
    total: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    for samples in scrapes:
        for key, value in samples.items():
            total[key] += value
    return dict(total)


def picked(samples: Samples, wanted: Samples) -> Samples:
    """The samples named in `wanted` (absent ones as None, so a missing series shows in the diff)."""
    return {key: samples.get(key) for key in wanted}  # type: ignore[misc]


def until_counted(read: Callable[[], Samples], what: str) -> Samples:
    """`read()` once it shows every expected counter and gauge (the expiries land with a sweep).

    Polls every half second up to `EXPIRY_DEADLINE`; then fails with the diff of what it last read.
    """
    end = time.monotonic() + EXPIRY_DEADLINE
    while True:
        samples = read()
        counters, gauges = picked(samples, EXPECTED_COUNTERS), picked(samples, EXPECTED_GAUGES)
        if counters == EXPECTED_COUNTERS and gauges == EXPECTED_GAUGES:
            return samples
        if time.monotonic() > end:
            assert (counters, gauges) == (EXPECTED_COUNTERS, EXPECTED_GAUGES), f"timed out waiting for {what}"
        time.sleep(0.5)


def histogram(samples: Samples, name: str) -> dict[str, Any]:
    """A histogram's count, sum and cumulative buckets (by upper bound)."""
    buckets = {dict(labels)["le"]: v for (n, labels), v in samples.items() if n == f"{name}_bucket"}
    return {"count": samples.get((f"{name}_count", ())), "sum": samples.get((f"{name}_sum", ())), "buckets": buckets}


def check_histogram(samples: Samples, name: str, count: float | None = None, at_most: float = 3600.0) -> None:
    """Buckets cumulative and ending in +Inf = count; the sum plausible (non-negative, below `at_most` per sample)."""
    h = histogram(samples, name)
    assert h["count"] is not None and h["buckets"], f"{name} is missing"
    if count is not None:
        assert h["count"] == count, f"{name}: count {h['count']}, expected {count}"
    assert h["count"] > 0, f"{name} observed nothing"
    ordered = sorted(h["buckets"].items(), key=lambda kv: float(kv[0]))
    values = [v for _, v in ordered]
    assert values == sorted(values), f"{name}: buckets are not cumulative: {ordered}"
    assert ordered[-1][0] == "+Inf" and ordered[-1][1] == h["count"], f"{name}: +Inf bucket is not the count"
    assert 0 <= h["sum"] <= at_most * h["count"], f"{name}: implausible sum {h['sum']} for {h['count']} samples"
