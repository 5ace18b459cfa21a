"""Wires the series and health checks of CONTRACT §10 onto what a composition root built (engine or Kafka adapter).

``HANDOFF_METRICS=basic`` leaves out the series that cost something per call (the business fold of
every committed batch, the store timings): it exists to measure what they cost (`bench.http --metrics basic`;
`bench.engine --metrics compare` does the same in-process), not as a setting to run with.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from handoff.engine.checks import engine_checks
from handoff.engine.engine import Engine
from handoff.health import DiskLimits, Health, disk_check, sweeper_absent
from handoff.instruments import BusinessSeries, StoreSeries
from handoff.kernel.events import Envelope
from handoff.metrics import Metrics
from projections.projector import Changes
from projections.tallies import view_counts

if TYPE_CHECKING:
    from streams.client import KafkaService

EMBEDDED_SYNC_HELP = "One sync of the write-ahead log to disk (a batch is answered after it)."


def detailed(environ: Mapping[str, str]) -> bool:
    """Whether the per-call series are on (``HANDOFF_METRICS`` is not ``basic``)."""
    return (environ.get("HANDOFF_METRICS") or "full").strip().lower() != "basic"


def instrument_engine(metrics: Metrics, engine: Engine) -> BusinessSeries:
    """Store timings and business series on the engine; call before `Engine.start` (the log-sync thread is timed)."""
    store = StoreSeries(metrics.registry, sync_help=EMBEDDED_SYNC_HELP)
    engine.timings = store.timings()
    business = BusinessSeries(metrics.registry)
    business.track(0, view_counts(engine.kv))  # the gauges as the views left them, not zero

    def record(envelopes: list[Envelope], changes: Changes) -> None:
        business.record(envelopes, changes.handoffs)

    engine.listeners.append(record)
    return business


def observe_engine(metrics: Metrics, engine: Engine, data_root: Path, environ: Mapping[str, str]) -> Health:
    """The embedded engine's series (unless ``HANDOFF_METRICS=basic``) and its health checks."""
    if detailed(environ):
        instrument_engine(metrics, engine)
    health = Health()
    for name, check in engine_checks(engine).items():
        health.add(name, check)
    health.add("disk", disk_check(data_root, DiskLimits.from_env(environ)))
    health.add("sweeper", sweeper_absent)
    return health


def observe_kafka(service: KafkaService) -> Health:
    """The Kafka adapter's health checks (its business series are the workers')."""
    from streams.checks import kafka_checks

    health = Health()
    for name, check in kafka_checks(service).items():
        health.add(name, check)
    health.add("sweeper", sweeper_absent)
    return health
