"""The series of CONTRACT §10 on a registry: business counters and gauges, store timings, loop lag, process.

Both the embedded engine (through `handoff.metrics.Metrics`) and the Kafka workers (through
`streams.metrics.WorkerMetrics`) put these on their registry and feed them the same way: each
committed batch goes through the pure fold `projections.tallies.tally`, so the two modes count
alike. The gauges start from the views (`track`), per partition in a worker (partition 0 in the
embedded engine), and follow the committed batches from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from handoff.engine.timings import StoreTimings
from handoff.kernel.events import Envelope
from projections.tallies import CONTEXT_TYPES, OUTCOMES, REQUEST_TYPES, SESSION_STATUSES, ViewCounts, tally
from projections.views import HandoffView

# Handoffs wait for agents: seconds to days. Store operations: tens of microseconds to seconds.
HOUR = 3600.0
HANDOFF_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, HOUR, 4 * HOUR, 12 * HOUR, 24 * HOUR, 7 * 24 * HOUR)
STORE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LOOP_LAG_INTERVAL = 0.5  # seconds between two probes of the event loop


def add_process_collectors(registry: CollectorRegistry) -> None:
    """The standard ``process_*``, ``python_info`` and ``python_gc_*`` series, on this registry."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


@dataclass
class _Live:
    """The gauges of one store (a worker's partition, or the embedded engine's one store)."""

    sessions: dict[str, int]
    pending: int


class BusinessSeries:
    """Sessions, context entries and handoffs as the committed events tell them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registered = Counter(
            "handoff_sessions_registered", "Sessions registered.", registry=registry
        )
        self.entries = Counter(
            "handoff_context_entries",
            "Context entries added, by type, as get_context shows them (registering a session and requesting a "
            "handoff each add a system entry).",
            ["context_type"],
            registry=registry,
        )
        self.handoffs = Counter(
            "handoff_handoffs",
            "Handoffs by request type and outcome: requested, then accepted, completed, rejected, cancelled, expired.",
            ["request_type", "outcome"],
            registry=registry,
        )
        self.accept_seconds = Histogram(
            "handoff_handoff_accept_seconds",
            "From a handoff's request to its acceptance (event timestamps).",
            registry=registry,
            buckets=HANDOFF_BUCKETS,
        )
        self.complete_seconds = Histogram(
            "handoff_handoff_complete_seconds",
            "From a handoff's request to its completion (event timestamps).",
            registry=registry,
            buckets=HANDOFF_BUCKETS,
        )
        # Every label set the contract names exists from the start: a rate over a series that appears
        # only with its first increment misses that increment.
        self._entries = {t: self.entries.labels(context_type=t) for t in CONTEXT_TYPES}
        self._handoffs = {
            (t, o): self.handoffs.labels(request_type=t, outcome=o) for t in REQUEST_TYPES for o in OUTCOMES
        }
        self._live: dict[int, _Live] = {}
        registry.register(_Gauges(self._live))

    def track(self, part: int, counts: ViewCounts) -> None:
        """Start the gauges of a store from what its views show (at start-up, or when a worker gets a partition)."""
        self._live[part] = _Live(dict(counts.sessions), counts.pending)

    def untrack(self, part: int) -> None:
        """A worker no longer owns the partition: its sessions are another worker's to show."""
        self._live.pop(part, None)

    def record(self, envelopes: Iterable[Envelope], handoffs: Mapping[str, HandoffView], part: int = 0) -> None:
        """Count a committed batch: its events, with the handoff views it left."""
        t = tally(envelopes, handoffs)
        if t.registered:
            self.registered.inc(t.registered)
        for context_type, n in t.entries.items():
            child = self._entries.get(context_type) or self.entries.labels(context_type=context_type)
            child.inc(n)
        for labels, n in t.handoffs.items():
            child = self._handoffs.get(labels) or self.handoffs.labels(request_type=labels[0], outcome=labels[1])
            child.inc(n)
        for seconds in t.accept_seconds:
            self.accept_seconds.observe(seconds)
        for seconds in t.complete_seconds:
            self.complete_seconds.observe(seconds)
        live = self._live.get(part)
        if live is not None:
            for status, delta in t.sessions.items():
                live.sessions[status] = live.sessions.get(status, 0) + delta
            live.pending += t.pending


class _Gauges(Collector):
    """``handoff_sessions{status}`` and ``handoff_handoffs_pending``, summed over the tracked stores when scraped."""

    def __init__(self, live: dict[int, _Live]) -> None:
        self.live = live

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        sessions = GaugeMetricFamily("handoff_sessions", "Sessions by status.", labels=["status"])
        stores = list(self.live.values())
        for status in SESSION_STATUSES:
            sessions.add_metric([status], sum(s.sessions.get(status, 0) for s in stores))
        yield sessions
        yield GaugeMetricFamily(
            "handoff_handoffs_pending", "Handoffs requested and not yet answered.", value=sum(s.pending for s in stores)
        )


class StoreSeries:
    """How long the store takes to read and write, and the log to become durable."""

    def __init__(self, registry: CollectorRegistry, *, sync_help: str) -> None:
        self.read = Histogram(
            "handoff_store_read_seconds", "One read of the views (a query).", registry=registry, buckets=STORE_BUCKETS
        )
        self.write = Histogram(
            "handoff_store_write_seconds",
            "One atomic write of a batch of events and the views they change.",
            registry=registry,
            buckets=STORE_BUCKETS,
        )
        self.sync = Histogram("handoff_log_sync_seconds", sync_help, registry=registry, buckets=STORE_BUCKETS)

    def timings(self) -> StoreTimings:
        """The engine's hooks, observing into these histograms."""
        return StoreTimings(read=self.read.observe, write=self.write.observe, sync=self.sync.observe)


class LoopLag:
    """``handoff_event_loop_lag_seconds``: how late the event loop wakes a task that sleeps a fixed interval."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "handoff_event_loop_lag_seconds",
            f"How much later than asked the event loop woke a probe sleeping {LOOP_LAG_INTERVAL} s.",
            registry=registry,
            buckets=LAG_BUCKETS,
        )

    async def watch(self, interval: float = LOOP_LAG_INTERVAL, clock: Callable[[], float] | None = None) -> None:
        """Probe until cancelled."""
        now = clock or asyncio.get_running_loop().time
        while True:
            start = now()
            await asyncio.sleep(interval)
            self.histogram.observe(max(0.0, now() - start - interval))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Probe while the block runs."""
        task = asyncio.create_task(self.watch(), name="handoff-loop-lag")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
