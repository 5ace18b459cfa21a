"""The server's CPU and memory during a load test, when it runs on this machine.

Three sources, in order: ``--pid`` (read from ``/proc``), the ``process_*`` series of its
``/metrics`` (any Prometheus-instrumented server), or — for a loopback URL — the process that owns
the listening socket (found through ``/proc/net/tcp``; this is how the original server is measured).
"""

from __future__ import annotations

import ipaddress
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from prometheus_client.parser import text_string_to_metric_families

PROC = Path("/proc")
INTERVAL = 0.5


@dataclass(frozen=True)
class Sample:
    """CPU seconds used and resident memory at one moment."""

    at: float  # perf_counter()
    cpu_seconds: float
    rss_bytes: float


class Source(Protocol):
    """Something that can tell the server's CPU time and memory now."""

    description: str

    async def sample(self) -> Sample | None:
        """The current figures, or None when they cannot be read (the process ended, the scrape failed)."""


@dataclass
class ProcSource:
    """A local process, read from ``/proc/PID``."""

    pid: int
    description: str = ""

    def __post_init__(self) -> None:
        self.description = self.description or f"pid {self.pid}"

    async def sample(self) -> Sample | None:
        """The process's user + system CPU time and VmRSS."""
        try:
            stat = (PROC / str(self.pid) / "stat").read_text()
            status = (PROC / str(self.pid) / "status").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
        rss = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        return Sample(time.perf_counter(), cpu, float(rss))


@dataclass
class MetricsSource:
    """``process_cpu_seconds_total`` and ``process_resident_memory_bytes`` scraped from a ``/metrics`` URL."""

    url: str
    description: str = ""

    def __post_init__(self) -> None:
        self.description = self.description or self.url

    async def sample(self) -> Sample | None:
        """One scrape, in a thread (a slow server must not stall the load); None without process series."""
        text = await anyio.to_thread.run_sync(self.scrape)
        return process_sample(text) if text is not None else None

    def scrape(self) -> str | None:
        """The exposition text, or None."""
        try:
            with urllib.request.urlopen(self.url, timeout=5.0) as response:
                return str(response.read().decode("utf-8", "replace"))
        except (urllib.error.URLError, OSError, ValueError):
            return None


def process_sample(text: str) -> Sample | None:
    """The process figures of a Prometheus exposition, if it has both."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
                found[sample.name] = float(sample.value)
    if len(found) < 2:
        return None
    return Sample(time.perf_counter(), found["process_cpu_seconds_total"], found["process_resident_memory_bytes"])


def is_loopback(url: str) -> bool:
    """True for a URL whose host is this machine's loopback."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port, from ``/proc/net/tcp{,6}`` and ``/proc/*/fd``."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for proc in PROC.iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


async def discover(url: str | None, pid: int | None, metrics_url: str | None) -> Source | None:
    """The best source for the server's figures, or None when it is not local and no source was given."""
    if pid is not None:
        return ProcSource(pid)
    if metrics_url is None and url is not None and is_loopback(url):
        parts = urlsplit(url)
        metrics_url = f"{parts.scheme}://{parts.netloc}/metrics"
    if metrics_url is not None:
        source = MetricsSource(metrics_url)
        if await source.sample() is not None:
            return source
    if url is not None and is_loopback(url):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        owner = listening_pid(port)
        if owner is not None and owner != os.getpid():
            return ProcSource(owner, f"pid {owner} (listening on port {port})")
    return None


@dataclass
class Sampler:
    """Samples a source every half second while the load runs."""

    source: Source
    samples: list[Sample] = field(default_factory=list)

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            sample = await self.source.sample()
            if sample is not None:
                self.samples.append(sample)
            await anyio.sleep(INTERVAL)

    def summary(self, local: bool) -> dict[str, Any]:
        """CPU percent of one core (mean and max over the run), resident memory, and its share of this machine."""
        figures: dict[str, Any] = {"source": self.source.description, "samples": len(self.samples)}
        pairs = list(zip(self.samples, self.samples[1:], strict=False))
        rates = [(b.cpu_seconds - a.cpu_seconds) / (b.at - a.at) * 100 for a, b in pairs if b.at > a.at]
        if len(self.samples) >= 2:
            first, last = self.samples[0], self.samples[-1]
            figures["cpuPercent"] = {
                "mean": round((last.cpu_seconds - first.cpu_seconds) / max(last.at - first.at, 1e-9) * 100, 1),
                "max": round(max(rates, default=0.0), 1),
            }
        if self.samples:
            peak = max(s.rss_bytes for s in self.samples)
            figures["rssBytes"] = {"max": int(peak), "last": int(self.samples[-1].rss_bytes)}
            total = machine_memory() if local else None
            if total:
                figures["memoryPercent"] = round(peak / total * 100, 2)
        figures["cores"] = os.cpu_count() or 1
        return figures


def machine_memory() -> int | None:
    """This machine's memory in bytes (MemTotal)."""
    try:
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
