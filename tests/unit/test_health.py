"""Health aggregation (CONTRACT §10): the worst component wins, absent ones never count, failed checks are unhealthy."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest

import handoff.health as health_module
from handoff.health import DiskLimits, Health, Report, disk_check, sweeper_absent
from streams.checks import kafka_checks
from streams.topics import Topics

pytestmark = pytest.mark.anyio

Usage = namedtuple("Usage", "total used free")
GIB = 1 << 30


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _fixed(status: str) -> Any:
    async def check() -> Report:
        return {"status": status}

    return check


async def test_the_worst_component_decides_and_an_absent_one_never_counts() -> None:
    health = Health()
    health.add("a", _fixed("healthy"))
    health.add("sweeper", sweeper_absent)
    assert (await health.report())["status"] == "healthy"
    health.add("disk", _fixed("degraded"))
    assert (await health.report())["status"] == "degraded"
    health.add("logSync", _fixed("unhealthy"))
    report = await health.report()
    assert report["status"] == "unhealthy"
    assert list(report["components"]) == ["a", "sweeper", "disk", "logSync"]


async def test_a_check_that_raises_or_hangs_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_module, "CHECK_TIMEOUT", 0.05)

    async def broken() -> Report:
        raise OSError("store closed")

    async def stuck() -> Report:
        await asyncio.Event().wait()
        return {"status": "healthy"}

    health = Health({"store": broken, "kafka": stuck})
    report = await health.report()
    assert report["status"] == "unhealthy"
    assert "store closed" in report["components"]["store"]["error"]
    assert "no answer" in report["components"]["kafka"]["error"]


@pytest.mark.parametrize(
    ("free", "total", "status"),
    [(50 * GIB, 100 * GIB, "healthy"), (4 * GIB, 100 * GIB, "degraded"), (GIB // 2, 5 * GIB, "degraded")],
    ids=["plenty", "under 5 percent", "under 1 GiB"],
)
async def test_a_nearly_full_disk_is_degraded(free: int, total: int, status: str) -> None:
    check = disk_check(Path("/data"), DiskLimits(), usage=lambda _: Usage(total, total - free, free))
    report = await check()
    assert report["status"] == status
    assert report["freeBytes"] == free


def test_disk_limits_come_from_the_environment() -> None:
    limits = DiskLimits.from_env({"HANDOFF_DISK_MIN_FREE_PERCENT": "10", "HANDOFF_DISK_MIN_FREE_BYTES": "1024"})
    assert limits == DiskLimits(min_free_percent=10.0, min_free_bytes=1024)
    assert DiskLimits.from_env({}) == DiskLimits(min_free_percent=5.0, min_free_bytes=GIB)


class _Service:
    """The adapter, as far as its health checks see it."""

    def __init__(self, served: int, partitions: int = 4) -> None:
        self.topics = Topics("t", partitions)
        self.served = served

    async def brokers(self) -> int:
        return 3

    async def ready(self) -> bool:
        return self.served == self.topics.partitions

    def partitions_served(self) -> float:
        return float(self.served)

    def worker_count(self) -> float:
        return 2.0


@pytest.mark.parametrize(("served", "status"), [(4, "healthy"), (1, "degraded"), (0, "unhealthy")])
async def test_workers_are_degraded_while_some_partitions_lack_one(served: int, status: str) -> None:
    checks = kafka_checks(_Service(served))  # type: ignore[arg-type]
    assert (await checks["workers"]())["status"] == status
    assert await checks["kafka"]() == {"status": "healthy", "brokers": 3}
