"""The load test's report: one JSON document, and the same figures as text for people, with the guide's KPIs."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from handoff.loadtest import stats
from handoff.loadtest.runner import Outcome

KPIS = (
    # name, unit, target, alert threshold, True when higher is better
    ("p95 latency", "ms", 100.0, 500.0, False),
    ("throughput", "calls/s", 1000.0, 500.0, True),
    ("error rate", "%", 0.1, 1.0, False),
    ("server CPU", "% of a core", 70.0, 70.0, False),
    ("server memory", "% of this machine", 80.0, 80.0, False),
)
"""The original performance guide's KPIs: target, and the threshold past which it alerts."""


def build(outcome: Outcome) -> dict[str, Any]:
    """The JSON report."""
    options = outcome.options
    active = sum(p.ended - p.started for p in outcome.phases)
    phases = []
    for phase in outcome.phases:
        calls = [c for c in outcome.calls if phase.started <= c.started < phase.ended]
        seconds = phase.ended - phase.started
        phases.append(
            {
                "name": phase.name,
                "clients": len(phase.scenarios),
                "scenarios": dict(Counter(phase.scenarios)),
                "startedAt": round(phase.started, 3),
                "seconds": round(seconds, 3),
                **stats.summary(calls, seconds),
                "tools": stats.by_tool(calls, seconds),
            }
        )
    overall = stats.summary(outcome.calls, active)
    report: dict[str, Any] = {
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "target": options.target,
        "transport": "http" if options.url is not None else "stdio",
        "scenario": options.scenario,
        "clients": options.clients,
        "secondsPerPhase": options.seconds,
        "durationSeconds": round(outcome.seconds, 3),
        "runId": outcome.run_id,
        "handoffLifecycle": outcome.lifecycle,
        "serverTools": outcome.tools,
        "overall": overall,
        "tools": stats.by_tool(outcome.calls, active),
        "errors": stats.error_codes(outcome.calls),
        "phases": phases,
        "server": outcome.server,
        "client": {
            "processes": options.processes,
            "cpuPercent": round(outcome.client_cpu_seconds / max(outcome.seconds, 1e-9) * 100, 1),
        },
        "timeline": stats.timeline(outcome.calls, outcome.seconds),
        "distribution": [list(point) for point in stats.distribution(outcome.calls)],
    }
    report["kpis"] = kpis(report)
    return report


def kpis(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each KPI's value and status: ok (meets the target), warn (misses it), alert (past the alert threshold)."""
    overall, server = report["overall"], report["server"] or {}
    values: dict[str, float | None] = {
        "p95 latency": overall["latencyMs"]["p95"],
        "throughput": overall["throughput"],
        "error rate": overall["errorRate"] * 100,
        "server CPU": (server.get("cpuPercent") or {}).get("mean"),
        "server memory": server.get("memoryPercent"),
    }
    out = []
    for name, unit, target, alert, higher in KPIS:
        value = values[name]
        if value is None:
            status = "unknown"
        elif (value >= target) if higher else (value <= target):
            status = "ok"
        elif (value < alert) if higher else (value > alert):
            status = "alert"
        else:
            status = "warn"
        out.append({"name": name, "unit": unit, "value": value, "target": target, "alert": alert, "status": status})
    return out


def text(report: dict[str, Any]) -> str:
    """The report for a terminal."""
    lines = [
        f"handoff loadtest: {report['target']} ({report['transport']}), {report['clients']} clients, "
        f"{report['secondsPerPhase']:g} s per phase, {report['durationSeconds']:.1f} s in all",
        "",
        f"{'phase':<16}{'calls':>9}{'calls/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>9}",
    ]
    for row in [*report["phases"], {"name": "overall", **report["overall"]}]:
        ms = row["latencyMs"]
        lines.append(
            f"{row['name']:<16}{row['calls']:>9,}{row['throughput']:>10,.0f}{ms['p50']:>9.2f}{ms['p95']:>9.2f}"
            f"{ms['p99']:>9.2f}{ms['max']:>9.1f}{row['errorRate'] * 100:>8.2f}%"
        )
    lines += ["", "per tool:"]
    for tool, row in report["tools"].items():
        ms = row["latencyMs"]
        lines.append(
            f"  {tool:<18}{row['calls']:>9,}  p50 {ms['p50']:.2f} ms  p95 {ms['p95']:.2f} ms  p99 {ms['p99']:.2f} ms"
        )
    if report["errors"]:
        lines.append("errors: " + ", ".join(f"{code} x{n}" for code, n in report["errors"].items()))
    lines += ["", server_line(report["server"], report["transport"]), client_line(report["client"])]
    lines += ["", "KPIs (the original guide's):"]
    for kpi in report["kpis"]:
        value = "n/a" if kpi["value"] is None else f"{kpi['value']:,.2f}"
        lines.append(
            f"  {kpi['name']:<15}{value:>12} {kpi['unit']:<18} target {kpi['target']:g}, alert {kpi['alert']:g}: "
            f"{kpi['status']}"
        )
    return "\n".join(lines)


CLIENT_SATURATED = 85.0
"""Above this share of a core, the load tester itself is the likely bottleneck."""


def client_line(client: dict[str, Any]) -> str:
    """The load tester's own CPU, with a warning when it, not the server, limits the throughput."""
    processes = client.get("processes", 1)
    line = f"load tester: CPU {client['cpuPercent']:.0f}% of a core over {processes} process(es)"
    if client["cpuPercent"] / processes >= CLIENT_SATURATED:
        line += " - saturated: the throughput measured is the client's limit, not the server's (try --processes)"
    return line


def server_line(server: dict[str, Any] | None, transport: str = "http") -> str:
    """The server's resources in one line."""
    if not server and transport == "stdio":
        return "server: CPU and memory not measured (give --pid; handoff stdio's engine: pid in DATA_DIR/engine.json)"
    if not server:
        return "server: CPU and memory not measured (not a local URL; give --pid or --metrics-url)"
    cpu = server.get("cpuPercent") or {}
    rss = (server.get("rssBytes") or {}).get("max")
    parts = [f"server ({server['source']}):"]
    if cpu:
        parts.append(f"CPU {cpu['mean']:.0f}% of a core (max {cpu['max']:.0f}%, {server['cores']} cores)")
    if rss is not None:
        share = f", {server['memoryPercent']:.1f}% of this machine" if "memoryPercent" in server else ""
        parts.append(f"RSS max {rss / 2**20:,.0f} MiB{share}")
    return " ".join(parts)
