"""The load test's report as one self-contained HTML page: tables and inline SVG charts, nothing fetched."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 36, 16, 40
COLORS = {"p50": "#2b7bb9", "p95": "#e08a1e", "p99": "#c0392b", "throughput": "#2e8b57", "errors": "#c0392b"}

Series = tuple[str, str, Sequence[tuple[float, float]]]  # label, colour, points


def nice_max(value: float) -> float:
    """A round number at or above `value` for an axis' top."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return float(next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= value))


def round_ticks(x0: float, x1: float) -> list[tuple[float, str]]:
    """Ticks at round steps (1, 2, 2.5, 5 times a power of ten), about five of them."""
    step = nice_max((x1 - x0) / 5)
    first = math.ceil(x0 / step)
    return [(k * step, f"{k * step:g}") for k in range(first, int(x1 / step) + 1)]


def chart(
    title: str,
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    x_range: tuple[float, float],
    x_ticks: Sequence[tuple[float, str]] | None = None,
) -> str:
    """A line chart as an ``<svg>`` element."""
    x0, x1 = x_range
    y1 = nice_max(max((y for _, _, points in series for _, y in points), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1.0) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - y / y1 * plot_h

    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for i in range(5):
        y = y1 * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    ticks = x_ticks or round_ticks(x0, x1)
    for x, label in ticks:
        parts.append(f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(
        f'<text transform="translate(14 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
    )
    for n, (label, color, points) in enumerate(series):
        if points:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
            parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        parts.append(f'<rect x="{LEFT + 10 + n * 110}" y="{TOP + 8}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{LEFT + 26 + n * 110}" y="{TOP + 18}">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def nines(p: float) -> float:
    """Position of a percentile on a 'nines' axis: p90 → 1, p99 → 2, p99.9 → 3."""
    return -math.log10(max(1.0 - p / 100.0, 1e-4))


def charts(report: dict[str, Any]) -> list[str]:
    """Latency over time, throughput over time, and latency by percentile."""
    timeline = report["timeline"]
    span = (0.0, max(report["durationSeconds"], 1.0))
    latency = [
        (name, COLORS[name], [(p["t"], p[name]) for p in timeline if p["throughput"] > 0])
        for name in ("p50", "p95", "p99")
    ]
    throughput = [
        ("calls/s", COLORS["throughput"], [(p["t"], p["throughput"]) for p in timeline]),
        ("errors/s", COLORS["errors"], [(p["t"], p["errors"]) for p in timeline]),
    ]
    dist = [(nines(p), ms) for p, ms in report["distribution"]]
    ticks = [(nines(p), f"p{p:g}") for p in (0, 50, 90, 99, 99.9, 99.99)]
    return [
        chart("Latency over time", latency, "seconds since start", "latency (ms)", span),
        chart("Throughput over time", throughput, "seconds since start", "per second", span),
        chart("Latency by percentile", [("latency", COLORS["p99"], dist)], "percentile", "latency (ms)", (0, 4), ticks),
    ]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table of already formatted cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_rows(rows: Sequence[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    """Calls, throughput, percentiles and errors of named summaries."""
    fmt: Callable[[float], str] = "{:.2f}".format
    return [
        [name, f"{r['calls']:,}", f"{r['throughput']:,.0f}", *(fmt(r["latencyMs"][p]) for p in ("p50", "p95", "p99"))]
        + [fmt(r["latencyMs"]["max"]), f"{r['errorRate'] * 100:.2f}%"]
        for name, r in rows
    ]


STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f2f2f2}td:first-child{text-align:left}
svg text{font-size:11px;fill:#444}.ok{color:#2e8b57}.warn{color:#e08a1e}.alert{color:#c0392b}h2{margin-top:28px}"""


def value_text(value: float | None) -> str:
    """A KPI's value, or n/a when it was not measured."""
    return "n/a" if value is None else f"{value:,.2f}"


def render(report: dict[str, Any], server_text: str, client_text: str) -> str:
    """The whole page."""
    heads = ["", "calls", "calls/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"]
    phases = summary_rows([(p["name"], p) for p in report["phases"]] + [("overall", report["overall"])])
    tools = summary_rows(list(report["tools"].items()))
    kpi_rows = "".join(
        f"<tr><td>{escape(k['name'])}</td><td>{value_text(k['value'])}</td>"
        f"<td>{escape(k['unit'])}</td><td>{k['target']:g}</td><td>{k['alert']:g}</td>"
        f"<td class=\"{k['status']}\">{k['status']}</td></tr>"
        for k in report["kpis"]
    )
    errors = ", ".join(f"{code} ×{n}" for code, n in report["errors"].items()) or "none"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>handoff loadtest: {escape(report["target"])}</title>
<style>{STYLE}</style></head><body>
<h1>handoff loadtest</h1>
<p>{escape(report["target"])} over {escape(report["transport"])}, {report["clients"]} clients,
{report["secondsPerPhase"]:g} s per phase ({escape(report["scenario"])}), generated {escape(report["generatedAt"])}.</p>
<h2>KPIs</h2>
<table><thead><tr><th></th><th>value</th><th>unit</th><th>target</th><th>alert</th><th>status</th></tr></thead>
<tbody>{kpi_rows}</tbody></table>
<p>{escape(server_text)}</p>
<p>{escape(client_text)}</p>
<h2>Charts</h2>
{"".join(f"<figure>{svg}</figure>" for svg in charts(report))}
<h2>Phases</h2>{table(heads, phases)}
<h2>Tools</h2>{table(heads, tools)}
<p>Errors: {escape(errors)}</p>
</body></html>
"""
