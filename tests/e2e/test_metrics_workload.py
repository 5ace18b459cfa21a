"""`handoff serve` (embedded) after a known workload: exact business counters, gauges that survive a restart,
plausible histograms, the standard process series, all in valid Prometheus exposition (CONTRACT §10).

The data dir starts with the aged session imported (it expires at the server's first sweep); the
workload's two handoffs with ``acceptWithin: 1`` expire at a later one, so the test waits for it
(`integration.workload.EXPIRY_DEADLINE`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from integration.harness import http_client, start_server, wait_for
from integration.workload import (
    EXPECTED_COUNTERS,
    EXPECTED_GAUGES,
    HANDOFF_HISTOGRAMS,
    TIMING_HISTOGRAMS,
    aged_log,
    check_histogram,
    drive,
    picked,
    scrape,
    until_counted,
)

from handoff.cli import main

pytestmark = pytest.mark.anyio


async def test_a_known_workload_reads_back_exactly_from_metrics_and_the_gauges_survive_a_restart(
    tmp_path: Path,
) -> None:
    assert main(["import", "--data-dir", str(tmp_path / "data"), "--in", str(aged_log(tmp_path / "aged.jsonl"))]) == 0
    served = start_server(tmp_path / "data", tmp_path / "serve.log")
    try:
        async with http_client(served.mcp_url) as client:
            await drive(client, "w")
        until_counted(lambda: scrape(served.url + "/metrics")[0], "the sweeper to expire the two handoffs")
        samples, types = scrape(served.url + "/metrics")  # nothing else falls due: the same counts
        assert picked(samples, EXPECTED_COUNTERS) == EXPECTED_COUNTERS
        assert picked(samples, EXPECTED_GAUGES) == EXPECTED_GAUGES
        for name, count in HANDOFF_HISTOGRAMS.items():
            check_histogram(samples, name, count, at_most=60)
        for name in TIMING_HISTOGRAMS:
            check_histogram(samples, name, at_most=5)
        assert types["handoff_handoff_accept_seconds"] == types["handoff_store_write_seconds"] == "histogram"
        assert types["handoff_sessions_registered"] == "counter" and types["handoff_sessions"] == "gauge"
        assert samples[("process_resident_memory_bytes", ())] > 0
        assert samples[("process_cpu_seconds_total", ())] > 0
        assert any(name == "python_info" for name, _ in samples)
        # the loop probe observes every 0.5 s
        lag = wait_for(
            lambda: (s := scrape(served.url + "/metrics")[0]).get(("handoff_event_loop_lag_seconds_count", ())) and s,
            10,
            "the event loop lag probe to observe",
        )
        check_histogram(lag, "handoff_event_loop_lag_seconds", at_most=5)
    finally:
        served.stop()

    again = start_server(tmp_path / "data", tmp_path / "serve.log")
    try:
        samples, _ = scrape(again.url + "/metrics")
    finally:
        again.stop()
    assert picked(samples, EXPECTED_GAUGES) == EXPECTED_GAUGES  # rebuilt from the views, not counted from zero
    assert samples[("handoff_sessions_registered_total", ())] == 0  # counters are this process's, as Prometheus has it
