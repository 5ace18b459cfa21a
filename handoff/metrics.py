"""Prometheus metrics of one server, on its own registry (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from handoff.instruments import LoopLag, add_process_collectors

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Per-tool request counts and latencies, plus gauges the composition root wires to the engine."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "handoff_tool_requests",
            "MCP tool calls by tool and outcome code (OK or an error code).",
            ["tool", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "handoff_tool_duration_seconds",
            "Time to answer an MCP tool call.",
            ["tool"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self.in_flight = Gauge(
            "handoff_mcp_requests_in_flight", "MCP HTTP requests being served.", registry=self.registry
        )
        self.loop_lag = LoopLag(self.registry)
        add_process_collectors(self.registry)

    def observe(self, tool: str, code: str, seconds: float) -> None:
        """Count one tool call and its latency (the labelled children are looked up once per label set)."""
        children = self._children.get((tool, code))
        if children is None:
            children = self._children[(tool, code)] = (
                self.requests.labels(tool=tool, code=code),
                self.latency.labels(tool=tool),
            )
        children[0].inc()
        children[1].observe(seconds)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read when the metrics are scraped."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
