"""The worker's Prometheus metrics, served at ``GET /metrics`` on its query endpoint.

What an operator of several workers watches: what each worker decided (by outcome), how its
transactions go (duration, size, failures), how far each partition it owns lags behind
``handoff.commands``, and what preparing partitions cost (events folded, stores rebuilt).
Counters move once per committed batch, not per command: the hot path pays a few increments.

Besides, the series of CONTRACT §10 that the embedded engine exports too (`handoff.instruments`):
the business series of the partitions it owns (the gauges are read from a partition's views when
it becomes ready, and leave with it), store timings (a "log sync" here is the commit of a batch's
Kafka transaction: what makes its events durable), the event loop's lag and the process.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from handoff.instruments import BusinessSeries, LoopLag, StoreSeries, add_process_collectors

OUTCOMES = ("appended", "replayed", "duplicate", "refused", "invalid")
"""A command record's outcome: an event was appended; an idempotent retry got the first result; a
record seen before (same commandId) got its first reply again; the command was refused (an error
reply, or a dead letter when nobody waits); the record could not be decoded or was misfiled (dead letter)."""


KAFKA_SYNC_HELP = "One commit of a batch's Kafka transaction (its events become durable and visible)."


@dataclass(frozen=True)
class PartitionState:
    """One owned partition as the metrics show it."""

    ready: bool
    decided: int  # offset of the last command record decided, -1 for none
    end: int | None  # the commands partition's end offset as last fetched (None: not fetched yet)


class Partitions(Protocol):
    """The worker, as far as its per-partition gauges need it."""

    def partition_states(self) -> Mapping[int, PartitionState]:
        """Every partition the group gave this worker."""


class WorkerMetrics:
    """The registry of one worker (no process-global state) and the counters its deciders feed."""

    def __init__(self, partitions: Partitions) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.commands = Counter(
            "handoff_worker_commands",
            "Command records decided, by outcome: " + ", ".join(OUTCOMES) + ".",
            ["outcome"],
            registry=self.registry,
        )
        self._outcomes = {o: self.commands.labels(outcome=o) for o in OUTCOMES}
        self.refusals = Counter(
            "handoff_worker_commands_refused",
            "Commands refused, by error code (VERSION_CONFLICT, NOT_FOUND, ...).",
            ["code"],
            registry=self.registry,
        )
        self.events = Counter(
            "handoff_worker_events_appended", "Events appended to handoff.events.", registry=self.registry
        )
        self.dead_letters = Counter(
            "handoff_worker_dead_letters", "Records sent to the dead-letter topic.", registry=self.registry
        )
        self.transaction_seconds = Histogram(
            "handoff_worker_transaction_seconds",
            "One batch: deciding its commands and committing its transaction.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.transaction_size = Histogram(
            "handoff_worker_transaction_commands",
            "Command records per transaction.",
            registry=self.registry,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
        )
        self.failures = Counter(
            "handoff_worker_transaction_failures",
            "Batches whose transaction failed (nothing of them was written); their partition is prepared again.",
            registry=self.registry,
        )
        self.folded = Counter(
            "handoff_worker_catch_up_events",
            "Events folded while preparing partitions (a restart, a rebalance, a rebuilt store).",
            registry=self.registry,
        )
        self.rebuilds = Counter(
            "handoff_worker_store_rebuilds",
            "Partition stores emptied and folded afresh because they were built from another log.",
            registry=self.registry,
        )
        self.registry.register(_PartitionGauges(partitions))
        self.business = BusinessSeries(self.registry)
        self.store = StoreSeries(self.registry, sync_help=KAFKA_SYNC_HELP)
        self.loop_lag = LoopLag(self.registry)
        add_process_collectors(self.registry)

    def committed(
        self, outcomes: Tally[str], refusals: Tally[str], *, events: int, dead: int, records: int, seconds: float
    ) -> None:
        """Count one committed batch."""
        for outcome, n in outcomes.items():
            self._outcomes[outcome].inc(n)
        for code, n in refusals.items():
            self.refusals.labels(code=code).inc(n)
        if events:
            self.events.inc(events)
        if dead:
            self.dead_letters.inc(dead)
        self.transaction_seconds.observe(seconds)
        self.transaction_size.observe(records)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


class _PartitionGauges(Collector):
    """Per-partition gauges, read from the worker when scraped."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions

    def describe(self) -> list[Metric]:
        return []  # the gauges' label values are only known when scraped

    def collect(self) -> Iterator[Metric]:
        states = self.partitions.partition_states()
        owned = GaugeMetricFamily(
            "handoff_worker_partitions", "Partitions the group gave this worker, by state.", labels=["state"]
        )
        ready = sum(1 for s in states.values() if s.ready)
        owned.add_metric(["ready"], ready)
        owned.add_metric(["preparing"], len(states) - ready)
        yield owned
        lag = GaugeMetricFamily(
            "handoff_worker_command_lag",
            "Command records of a ready partition not yet decided (its end on handoff.commands, as last fetched, "
            "minus its decided position).",
            labels=["partition"],
        )
        decided = GaugeMetricFamily(
            "handoff_worker_decided_offset",
            "The offset of the last command record decided, per ready partition (-1: none yet).",
            labels=["partition"],
        )
        for p, s in sorted(states.items()):
            if not s.ready:
                continue
            decided.add_metric([str(p)], s.decided)
            if s.end is not None:
                lag.add_metric([str(p)], max(0, s.end - (s.decided + 1)))
        yield lag
        yield decided
