"""The composition root of `handoff serve`: opens RocksDB, builds the engine and the adapter, serves MCP.

It is the only place in that process that opens the store and builds concrete adapters; everything
it builds takes its dependencies as arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import IO

from mcp.server.lowlevel.server import Server

from handoff.config import DataDir, Env
from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel.types import Limits
from handoff.mcp import http, launch
from handoff.mcp.deps import Deps
from handoff.mcp.server import build_server
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from projections.store import RocksKeyValue

log = logging.getLogger("handoff")


def _wire(engine: Engine) -> Deps:
    """The adapter's dependencies over the embedded engine, with its gauges."""
    service = EmbeddedService(engine)
    notifier = Notifier()
    service.add_listener(notifier.on_change)
    metrics = Metrics()
    metrics.gauge("handoff_engine_running", "1 while the engine takes writes.", lambda: float(engine.running))
    metrics.gauge("handoff_log_position", "Events committed to the log.", lambda: float(engine.position))
    metrics.gauge(
        "handoff_resource_subscriptions", "Resource subscriptions (2025-11-25 era).", notifier.subscriber_count
    )
    return Deps(commands=service, reads=service, limits=engine.limits, metrics=metrics, notifier=notifier)


@asynccontextmanager
async def _running(engine: Engine) -> AsyncIterator[Engine]:
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()  # finishes the queued writes


def _idle_policy(data: DataDir, activity: http.Activity, idle_exit: float) -> Callable[[], Awaitable[bool]]:
    held: list[IO[str]] = []  # the exclusive client lock, kept until the process ends

    async def should_stop() -> bool:
        if activity.idle_for() < idle_exit:
            return False
        lock = launch.try_exclusive(data.clients_lock)
        if lock is None:
            return False
        held.append(lock)
        log.info("exiting after being idle", extra={"idleSeconds": idle_exit})
        return True

    return should_stop


async def _serve_http(kv: RocksKeyValue, data: DataDir, ns: argparse.Namespace) -> None:
    async with _running(Engine(kv, limits=Limits())) as engine:
        deps = _wire(engine)
        activity = http.Activity()
        app = http.build_app(build_server(deps), deps, activity, ns.host)
        sock = http.bind(ns.host, ns.port)

        def started(url: str) -> None:
            launch.advertise(data, url)
            log.info("serving MCP over HTTP", extra={"url": url, "dataDir": str(data.root), "pid": os.getpid()})

        idle = None if ns.idle_exit is None else _idle_policy(data, activity, ns.idle_exit)
        try:
            await http.serve(app, sock, on_started=started, should_stop=idle)
        finally:
            launch.withdraw(data)
    log.info("stopped")


async def _stdio_session(server: Server[Deps]) -> None:
    from mcp.server.stdio import stdio_server  # takes over fds 0 and 1 while it runs

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def _serve_stdio(kv: RocksKeyValue) -> None:
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    async with _running(Engine(kv, limits=Limits())) as engine:
        log.info("serving MCP over stdio")
        serving = asyncio.create_task(_stdio_session(build_server(_wire(engine))))
        waiter = asyncio.create_task(signalled.wait())
        await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not signalled.is_set():
            return await serving  # stdin closed: the normal end
        log.info("stopping on a signal")
        serving.cancel()
    # The engine has finished its queued writes. The SDK reads stdin in a thread that no
    # cancellation can interrupt, so close the store here and leave without waiting for it.
    kv.close()
    logging.shutdown()
    os._exit(0)


def _open_store(data: DataDir) -> RocksKeyValue | None:
    data.root.mkdir(parents=True, exist_ok=True)
    try:
        return RocksKeyValue(str(data.db))
    except Exception as exc:  # noqa: BLE001 - rocksdict raises a bare Exception, e.g. when the DB is locked
        log.error("cannot open the database", extra={"path": str(data.db), "error": str(exc)})
        if "lock" in str(exc).lower():
            log.error("another engine holds this data dir; use `handoff stdio` to share it, or another --data-dir")
        return None


def serve(ns: argparse.Namespace, env: Env) -> int:
    """`handoff serve`."""
    if ns.kafka or env.kafka_bootstrap:
        log.error("Kafka mode is not available yet; run without --kafka (and without HANDOFF_KAFKA_BOOTSTRAP)")
        return 2
    data = DataDir(ns.data_dir or env.data_dir)
    kv = _open_store(data)
    if kv is None:
        return 1
    try:
        if ns.transport == "stdio":
            asyncio.run(_serve_stdio(kv))
        else:
            asyncio.run(_serve_http(kv, data, ns))
    except OSError as exc:
        log.error("cannot serve", extra={"error": str(exc)})
        return 1
    finally:
        kv.close()
    return 0
