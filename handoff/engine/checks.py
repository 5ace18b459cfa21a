"""Health checks of the embedded engine: its store and its log sync (see `handoff.health`)."""

from __future__ import annotations

from handoff.engine.engine import Engine
from handoff.health import Check, Report
from handoff.storage import log as L


def engine_checks(engine: Engine) -> dict[str, Check]:
    """``store`` (readable, writer running) and ``logSync`` (unhealthy once a sync failed: writes are refused)."""

    async def store() -> Report:
        engine.kv.get(L.POSITION_KEY)  # raises if the store cannot be read
        if engine.write_refusal is None and not engine.running:
            return {"status": "unhealthy", "error": "the writer is not running", "position": engine.position}
        return {"status": "healthy", "position": engine.position}

    async def log_sync() -> Report:
        refusal = engine.write_refusal
        if refusal is not None:
            return {"status": "unhealthy", "error": refusal}
        durable = "synced per batch" if engine.sync else "not synced (sync off)"
        return {"status": "healthy", "mode": durable}

    return {"store": store, "logSync": log_sync}
