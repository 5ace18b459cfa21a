"""Kafka mode after the known workload of `integration.workload`: the adapter's and two workers' /metrics,
added up, show the same exact business series as the embedded engine; the adapter's /healthz shows Kafka
and the workers (CONTRACT §10). The aged session is imported into the topics before the workers start;
the worker owning its partition expires it."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest
from integration.harness import http_client, http_get, wait_for
from integration.workload import (
    EXPECTED_COUNTERS,
    EXPECTED_GAUGES,
    HANDOFF_HISTOGRAMS,
    Samples,
    aged_log,
    check_histogram,
    drive,
    picked,
    scrape,
    summed,
    until_counted,
)

from handoff.cli import main
from kafka.mcp import running_kafka_mcp
from kafka.support import Broker, WorkerProcess
from streams.topics import Topics

pytestmark = pytest.mark.anyio

ANNOUNCED = re.compile(r'^\{"workerId": .*"url": .*\}$', re.MULTILINE)


def _worker_url(log: str) -> str | None:
    found = ANNOUNCED.search(log)
    return str(json.loads(found.group(0))["url"]) if found else None


def _ready_partitions(url: str) -> float:
    samples, _ = scrape(url + "/metrics")
    return samples.get(("handoff_worker_partitions", (("state", "ready"),)), 0.0)


async def test_a_known_workload_reads_back_exactly_from_the_adapter_and_workers_summed(
    broker: Broker, tmp_path: Path
) -> None:
    topics = Topics(f"m{uuid.uuid4().hex[:8]}", 4)
    argv = ["import", "--kafka", broker.bootstrap, "--topic-prefix", topics.prefix, "--partitions", "4"]
    assert await asyncio.to_thread(main, [*argv, "--in", str(aged_log(tmp_path / "aged.jsonl"))]) == 0
    with running_kafka_mcp(broker.bootstrap, tmp_path, topics=topics) as kafka:
        first = wait_for(lambda: _worker_url(kafka.worker_log.read_text()), 30, "the first worker's URL")
        second = WorkerProcess(broker.bootstrap, kafka.topics, tmp_path / "w2", tmp_path / "w2.log")
        second.start()
        try:
            second_url = wait_for(lambda: _worker_url(second.log()), 60, f"the second worker's URL\n{second.log()}")
            workers = (first, second_url)
            # Both workers own partitions, every partition is ready once: the group has settled.
            wait_for(
                lambda: all(_ready_partitions(u) > 0 for u in workers)
                and sum(_ready_partitions(u) for u in workers) == kafka.topics.partitions,
                60,
                f"the two workers to share the partitions\n{kafka.logs()}",
            )
            wait_for(lambda: http_get(kafka.served.url + "/readyz")[0] == 200, 60, "the adapter to be ready")
            async with http_client(kafka.served.mcp_url) as client:
                await drive(client, "k")

            def total() -> Samples:
                return summed(*(scrape(u + "/metrics")[0] for u in (kafka.served.url, *workers)))

            # the two handoffs with acceptWithin: 1 expire by the sweep of the worker that owns their partition
            until_counted(total, "the workers to count every committed event and sweep the expiries")
            total = summed(*(scrape(u + "/metrics")[0] for u in (kafka.served.url, *workers)))
            assert picked(total, EXPECTED_COUNTERS) == EXPECTED_COUNTERS  # nothing else falls due: the same counts
            assert picked(total, EXPECTED_GAUGES) == EXPECTED_GAUGES
            for name, count in HANDOFF_HISTOGRAMS.items():
                check_histogram(total, name, count, at_most=60)
            for name in ("handoff_store_read_seconds", "handoff_store_write_seconds", "handoff_log_sync_seconds"):
                check_histogram(total, name, at_most=30)
            adapter, _ = scrape(kafka.served.url + "/metrics")
            assert adapter[("process_resident_memory_bytes", ())] > 0
            assert ("handoff_sessions_registered_total", ()) not in adapter  # the workers count, not the adapter

            status, body = http_get(kafka.served.url + "/healthz")
            health = json.loads(body)
            assert status == 200, body
            assert health["status"] == "healthy", body
            assert health["components"]["kafka"]["brokers"] == 1
            assert health["components"]["workers"]["partitionsServed"] == kafka.topics.partitions
        finally:
            second.stop()
