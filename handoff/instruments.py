"""The series of CONTRACT §10 on a registry: business counters and gauges, store timings, loop lag, process.

Both the embedded engine (wired by `handoff.observation`) and the Kafka workers (through
`streams.metrics.WorkerMetrics`) put these on their registry and feed them the same way: each
committed batch goes through the pure fold `projections.tallies.tally`, so the two modes count
alike. The gauges start from the views (`track`), per partition in a worker (partition 0 in the
embedded engine), and follow the committed batches from there.

Cheap on the hot path: a batch is folded into plain Python counts, and a duration goes into a
bisected bucket list; both become Prometheus families only when scraped. prometheus_client's own
Counter and Histogram take a lock and walk their buckets on every call, which cost ~10 % of a
tool call's CPU under a 16-client write load.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from handoff.engine.timings import StoreTimings
from handoff.kernel.events import Envelope
from projections.tallies import CONTEXT_TYPES, OUTCOMES, REQUEST_TYPES, SESSION_STATUSES, Tally, ViewCounts, tally
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


class Buckets(Collector):
    """A label-less histogram: `observe` bisects into a list of counts; the family is built when scraped.

    One thread observes it (the event loop, or the log-sync thread for the sync times): the count is
    the sum of the buckets, so ``+Inf`` always equals ``_count``.
    """

    def __init__(self, registry: CollectorRegistry, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.name, self.documentation, self.bounds = name, documentation, bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self._les = [repr(float(b)) for b in bounds] + ["+Inf"]  # as prometheus_client writes them (5e-05, 1.0)
        registry.register(self)

    def observe(self, value: float) -> None:
        """Count one observation (``le`` buckets: the first bound not below it)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def describe(self) -> list[Metric]:
        """The family's name, for the registry's duplicate check."""
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[Metric]:
        """The histogram as it is now."""
        counts, total, cumulative = list(self.counts), self.sum, 0
        buckets = []
        for le, n in zip(self._les, counts, strict=True):
            cumulative += n
            buckets.append((le, cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


class BusinessSeries(Collector):
    """Sessions, context entries and handoffs as the committed events tell them.

    Each tracked store (a partition) folds into its own `Tally` over its views' counts at tracking
    time; a store that is untracked (a worker lost the partition) leaves its counters in `_retired`
    and its gauges to the worker that owns it now.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._retired = Tally()
        self._live: dict[int, tuple[Tally, ViewCounts]] = {}
        self.accept_seconds = Buckets(
            registry, "handoff_handoff_accept_seconds",
            "From a handoff's request to its acceptance (event timestamps).", HANDOFF_BUCKETS,
        )  # fmt: skip
        self.complete_seconds = Buckets(
            registry, "handoff_handoff_complete_seconds",
            "From a handoff's request to its completion (event timestamps).", HANDOFF_BUCKETS,
        )  # fmt: skip
        registry.register(self)

    def track(self, part: int, counts: ViewCounts) -> None:
        """Start the gauges of a store from what its views show (at start-up, or when a worker gets a partition)."""
        self.untrack(part)
        self._live[part] = (Tally(), counts)

    def untrack(self, part: int) -> None:
        """A worker no longer owns the partition: its sessions are another worker's to show; its counts stay."""
        live = self._live.pop(part, None)
        if live is not None:
            _add_counters(self._retired, live[0])

    def record(self, envelopes: Iterable[Envelope], handoffs: Mapping[str, HandoffView], part: int = 0) -> None:
        """Count a committed batch: its events, with the handoff views it left."""
        live = self._live.get(part)
        t = tally(envelopes, handoffs, self._retired if live is None else live[0])
        if t.accept_seconds:
            for seconds in t.accept_seconds:
                self.accept_seconds.observe(seconds)
            t.accept_seconds.clear()
        if t.complete_seconds:
            for seconds in t.complete_seconds:
                self.complete_seconds.observe(seconds)
            t.complete_seconds.clear()

    def describe(self) -> list[Metric]:
        """Nothing: the label values are only known when scraped."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The counters (retired and live stores summed) and the gauges (live stores)."""
        totals = Tally()
        _add_counters(totals, self._retired)
        live = list(self._live.values())
        for t, _ in live:
            _add_counters(totals, t)
        yield CounterMetricFamily("handoff_sessions_registered", "Sessions registered.", value=totals.registered)
        entries = CounterMetricFamily(
            "handoff_context_entries",
            "Context entries added, by type, as get_context shows them (registering a session and requesting a "
            "handoff each add a system entry).",
            labels=["context_type"],
        )
        # Every label set the contract names is there from the start: a rate over a series that appears
        # only with its first increment misses that increment.
        for context_type in sorted({*CONTEXT_TYPES, *totals.entries}):
            entries.add_metric([context_type], totals.entries.get(context_type, 0))
        yield entries
        handoffs = CounterMetricFamily(
            "handoff_handoffs",
            "Handoffs by request type and outcome: requested, then accepted, completed, rejected, cancelled, expired.",
            labels=["request_type", "outcome"],
        )
        for labels in sorted({*((t, o) for t in REQUEST_TYPES for o in OUTCOMES), *totals.handoffs}):
            handoffs.add_metric(list(labels), totals.handoffs.get(labels, 0))
        yield handoffs
        sessions = GaugeMetricFamily("handoff_sessions", "Sessions by status.", labels=["status"])
        for status in SESSION_STATUSES:
            sessions.add_metric([status], sum(base.sessions.get(status, 0) + t.sessions[status] for t, base in live))
        yield sessions
        pending = sum(base.pending + t.pending for t, base in live)
        yield GaugeMetricFamily("handoff_handoffs_pending", "Handoffs requested and not yet answered.", value=pending)


def _add_counters(into: Tally, t: Tally) -> None:
    into.registered += t.registered
    into.entries.update(t.entries)
    into.handoffs.update(t.handoffs)


class StoreSeries:
    """How long the store takes to read and write, and the log to become durable."""

    def __init__(self, registry: CollectorRegistry, *, sync_help: str) -> None:
        self.read = Buckets(registry, "handoff_store_read_seconds", "One read of the views (a query).", STORE_BUCKETS)
        self.write = Buckets(
            registry, "handoff_store_write_seconds", "One atomic write of a batch of events and the views they change.",
            STORE_BUCKETS,
        )  # fmt: skip
        self.sync = Buckets(registry, "handoff_log_sync_seconds", sync_help, STORE_BUCKETS)

    def timings(self) -> StoreTimings:
        """The engine's hooks, observing into these histograms."""
        return StoreTimings(read=self.read.observe, write=self.write.observe, sync=self.sync.observe)


class LoopLag:
    """``handoff_event_loop_lag_seconds``: how late the event loop wakes a task that sleeps a fixed interval."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Buckets(
            registry, "handoff_event_loop_lag_seconds",
            f"How much later than asked the event loop woke a probe sleeping {LOOP_LAG_INTERVAL} s.", LAG_BUCKETS,
        )  # fmt: skip

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
