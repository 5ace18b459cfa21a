from __future__ import annotations

import json
import re
from typing import Any

import anyio
from mcp_types import CallToolResult, TextContent

from handoff.loadtest import html, report
from handoff.loadtest.multi import slices
from handoff.loadtest.runner import Options, Outcome, Phase, plan
from handoff.loadtest.scenarios import Worker
from handoff.loadtest.stats import Call, distribution, percentile, summary, timeline


def calls(latencies_ms: list[float], spread: float = 2.0, error_every: int = 0) -> list[Call]:
    n = len(latencies_ms)

    def error(i: int) -> str | None:
        return "VERSION_CONFLICT" if error_every and i % error_every == 0 else None

    return [Call("mix", "update_context", i * spread / n, ms / 1000, error(i)) for i, ms in enumerate(latencies_ms)]


def test_percentiles_are_nearest_rank() -> None:
    ordered = [float(i) for i in range(1, 101)]
    assert (percentile(ordered, 50), percentile(ordered, 95), percentile(ordered, 99)) == (50.0, 95.0, 99.0)
    assert percentile([], 99) == 0.0


def test_summary_counts_errors_and_throughput_over_the_phase_seconds() -> None:
    figures = summary(calls([10.0] * 100, error_every=10), seconds=4.0)
    assert figures["calls"] == 100 and figures["errors"] == 10
    assert figures["errorRate"] == 0.1 and figures["throughput"] == 25.0
    assert figures["latencyMs"]["p95"] == 10.0


def test_the_last_slice_of_the_timeline_takes_the_remainder_instead_of_showing_a_false_drop() -> None:
    points = timeline(calls([5.0] * 302, spread=3.02), seconds=3.02)
    assert [p["t"] for p in points] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert min(p["throughput"] for p in points) > 90


def test_the_distribution_reaches_the_slowest_call() -> None:
    points = distribution(calls([1.0] * 999 + [250.0]))
    assert points[0][0] == 0.0 and points[-1] == (100.0, 250.0)
    assert [p for p, _ in points] == sorted(p for p, _ in points)


def test_the_mix_splits_clients_over_three_scenarios_and_all_runs_each_in_turn() -> None:
    assert plan("mix", 4) == [("mix", ("own-sessions", "shared-session", "handoffs", "own-sessions"))]
    assert [name for name, _ in plan("all", 3)] == ["sequential", "own-sessions", "shared-session", "handoffs"]
    assert plan("all", 3)[0][1] == ("sequential",)


def outcome() -> Outcome:
    done = Outcome(Options("http://127.0.0.1:1/mcp", None, 2, 2.0, "mix"), "run1", ["register_session"], True)
    done.calls = calls([float(i % 40 + 1) for i in range(400)], error_every=200)
    done.phases = [Phase("mix", ("own-sessions", "handoffs"), 0.0, 2.0)]
    done.seconds = 2.0
    done.server = {"source": "pid 1", "samples": 4, "cpuPercent": {"mean": 75.0, "max": 90.0}, "cores": 2}
    return done


def test_kpis_compare_with_the_guides_targets_and_alert_thresholds() -> None:
    kpis = {k["name"]: k for k in report.build(outcome())["kpis"]}
    assert kpis["p95 latency"]["status"] == "ok"  # 38 ms < 100 ms
    assert kpis["throughput"]["status"] == "alert"  # 200/s < 500/s
    assert kpis["error rate"]["status"] == "warn"  # 0.5 %: over 0.1 %, under 1 %
    assert kpis["server CPU"]["status"] == "alert"  # 75 % of a core: over 70 %
    assert kpis["server memory"]["status"] == "unknown"


def test_the_html_report_is_self_contained_with_three_svg_charts() -> None:
    document = report.build(outcome())
    page = html.render(document, report.server_line(document["server"]), report.client_line(document["client"]))
    assert page.count("<svg") == 3 and page.count('class="series"') >= 5
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the report must not fetch anything"
    assert "<script" not in page


class FakeClient:
    """Answers every tool call with one fixed result."""

    def __init__(self, result: Any) -> None:
        self.result = result

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        return self.result


def worker_answered(result: Any) -> tuple[Outcome, dict[str, Any] | None]:
    done = Outcome(Options("http://127.0.0.1:1/mcp", None, 1, 1.0, "mix"), "run1", [], False)
    worker = Worker(FakeClient(result), 0, "run1", "mix", 0.0, 1.0, done, False)  # type: ignore[arg-type]
    return done, anyio.run(worker.call, "update_context", {"sessionKey": "k"})


def test_a_tool_error_counts_with_its_code() -> None:
    refusal = {"success": False, "code": "SESSION_NOT_FOUND"}
    answer = CallToolResult(content=[], structured_content=refusal, is_error=True)
    done, content = worker_answered(answer)
    assert content is None and [c.error for c in done.calls] == ["SESSION_NOT_FOUND"]


def test_the_original_servers_text_failure_without_is_error_counts_as_an_error() -> None:
    text = json.dumps({"success": False, "error": "Session not found", "sessionKey": "k"})
    done, content = worker_answered(CallToolResult(content=[TextContent(type="text", text=text)]))
    assert content is None and [c.error for c in done.calls] == ["TOOL_ERROR"]


def test_the_original_servers_text_success_is_parsed() -> None:
    text = json.dumps({"success": True, "contextEntry": {"sequenceNumber": 2}})
    done, content = worker_answered(CallToolResult(content=[TextContent(type="text", text=text)]))
    assert content == {"success": True, "contextEntry": {"sequenceNumber": 2}} and done.calls[0].error is None


def test_a_saturated_load_tester_says_the_throughput_is_its_own_limit() -> None:
    assert "saturated" in report.client_line({"cpuPercent": 97.0})
    assert "saturated" not in report.client_line({"cpuPercent": 40.0})


def test_clients_are_spread_evenly_over_the_processes() -> None:
    assert slices(8, 3) == [(0, 3), (3, 3), (6, 2)]
    assert slices(2, 2) == [(0, 1), (1, 1)]
    assert sum(count for _, count in slices(17, 4)) == 17


def test_chart_ticks_fall_on_round_numbers() -> None:
    assert [label for _, label in html.round_ticks(0, 20.1)] == ["0", "5", "10", "15", "20"]
    assert [label for _, label in html.round_ticks(0, 3.02)] == ["0", "1", "2", "3"]
