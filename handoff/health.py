"""Health of a running server (``/healthz`` and ``handoff://health``): one check per component, worst one wins.

A component reports ``healthy``, ``degraded`` (working, but an operator should look: the disk is
nearly full, some partitions have no worker) or ``unhealthy`` (writes fail: the log cannot be
synced, the store is closed), or ``absent`` for a part this deployment does not run (it never
changes the overall status). The component list is open: a composition root registers the checks
of what it built (`Health.add`), so later parts (the lifecycle sweeper) add theirs the same way.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["healthy", "degraded", "unhealthy", "absent"]
Report = dict[str, Any]  # {"status": Status, ...details}
Check = Callable[[], Awaitable[Report]]

_RANK: dict[str, int] = {"absent": 0, "healthy": 0, "degraded": 1, "unhealthy": 2}
CHECK_TIMEOUT = 2.0  # seconds a component may take to answer before it counts as unhealthy

DISK_MIN_FREE_PERCENT = 5.0
DISK_MIN_FREE_BYTES = 1 << 30


@dataclass
class Health:
    """The registered component checks of one server."""

    checks: dict[str, Check] = field(default_factory=dict)

    def add(self, name: str, check: Check) -> None:
        """Register (or replace) a component's check."""
        self.checks[name] = check

    async def report(self) -> Report:
        """``{"status": worst of the components, "components": {name: report}}``."""
        names = list(self.checks)
        reports = await asyncio.gather(*(_bounded(self.checks[n]) for n in names))
        components = dict(zip(names, reports, strict=True))
        worst = max((_RANK.get(r["status"], 2) for r in components.values()), default=0)
        status = {0: "healthy", 1: "degraded", 2: "unhealthy"}[worst]
        return {"status": status, "components": components}


async def _bounded(check: Check) -> Report:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except TimeoutError:
        return {"status": "unhealthy", "error": f"no answer within {CHECK_TIMEOUT} s"}
    except Exception as exc:  # noqa: BLE001 - a failing check is the component's state, not the server's crash
        return {"status": "unhealthy", "error": f"{type(exc).__name__}: {exc}"}


@dataclass(frozen=True)
class DiskLimits:
    """Below either floor of free space the disk counts as nearly full (degraded)."""

    min_free_percent: float = DISK_MIN_FREE_PERCENT
    min_free_bytes: int = DISK_MIN_FREE_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DiskLimits:
        """``HANDOFF_DISK_MIN_FREE_PERCENT`` and ``HANDOFF_DISK_MIN_FREE_BYTES``, else the defaults (5 %, 1 GiB)."""
        percent = environ.get("HANDOFF_DISK_MIN_FREE_PERCENT")
        floor = environ.get("HANDOFF_DISK_MIN_FREE_BYTES")
        return cls(
            min_free_percent=float(percent) if percent else DISK_MIN_FREE_PERCENT,
            min_free_bytes=int(floor) if floor else DISK_MIN_FREE_BYTES,
        )


def disk_check(path: Path, limits: DiskLimits, usage: Callable[[str], Any] = shutil.disk_usage) -> Check:
    """Free space where the data lives: degraded when nearly full."""

    async def check() -> Report:
        du = usage(str(path))
        percent = 100.0 * du.free / du.total if du.total else 0.0
        low = percent < limits.min_free_percent or du.free < limits.min_free_bytes
        return {
            "status": "degraded" if low else "healthy",
            "path": str(path),
            "freeBytes": du.free,
            "totalBytes": du.total,
            "freePercent": round(percent, 2),
            "minFreePercent": limits.min_free_percent,
            "minFreeBytes": limits.min_free_bytes,
        }

    return check


async def sweeper_absent() -> Report:
    """No lifecycle sweeper runs in this release: nothing expires yet."""
    return {"status": "absent", "running": False, "detail": "no expiry sweeper in this release"}


def process_info() -> dict[str, Any]:
    """What identifies the answering process."""
    return {"pid": os.getpid()}
