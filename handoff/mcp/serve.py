"""The composition root of `handoff serve`: builds the embedded engine or the Kafka adapter, serves MCP.

It is the only place in that process that opens the store or Kafka and builds concrete adapters;
everything it builds takes its dependencies as arguments.

Kafka mode (`--kafka BOOTSTRAP` or ``HANDOFF_KAFKA_BOOTSTRAP``) opens no RocksDB: commands go to
Kafka, reads go to the workers. Topic names and partition count come from
``HANDOFF_KAFKA_TOPIC_PREFIX`` (default ``handoff``) and ``HANDOFF_KAFKA_PARTITIONS`` (default 8),
the same settings the workers read. If Kafka refuses the connection at start-up, or does not answer within
``HANDOFF_KAFKA_CONNECT_TIMEOUT`` seconds (default 30), serve exits with status 1 and says so: a
wrong address is far likelier than a broker that comes later, and a supervisor (compose's
``restart``, systemd) retries a failed start. Once running, an outage of Kafka or of the workers
never stops the process: tools answer ``UNAVAILABLE`` and ``/readyz`` answers 503 until it heals.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from mcp.server.lowlevel.server import Server

from handoff.config import (
    KAFKA_UNREACHABLE,
    DataDir,
    Env,
    KafkaUnreachable,
    kafka_connect_timeout,
    try_exclusive,
    tune_gc_for_serving,
)
from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel.types import Limits
from handoff.mcp import http, launch
from handoff.mcp.deps import Deps
from handoff.mcp.server import build_server
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from projections.store import RocksKeyValue
from streams.replication import Replication, from_arguments

if TYPE_CHECKING:
    from streams.client import KafkaService
    from streams.topics import Topics

log = logging.getLogger("handoff")


def _observed(service: EmbeddedService | KafkaService) -> tuple[Notifier, Metrics]:
    """A notifier fed by the service's commits, and the metrics with the gauge both modes share."""
    notifier = Notifier()
    service.add_listener(notifier.on_change)
    metrics = Metrics()
    metrics.gauge(
        "handoff_resource_subscriptions", "Resource subscriptions (2025-11-25 era).", notifier.subscriber_count
    )
    return notifier, metrics


def _wire(engine: Engine) -> Deps:
    """The adapter's dependencies over the embedded engine, with its gauges."""
    service = EmbeddedService(engine)
    notifier, metrics = _observed(service)
    metrics.gauge("handoff_engine_running", "1 while the engine takes writes.", lambda: float(engine.running))
    metrics.gauge("handoff_log_position", "Events committed to the log.", lambda: float(engine.position))
    return Deps(commands=service, reads=service, limits=engine.limits, metrics=metrics, notifier=notifier)


def _wire_kafka(service: KafkaService) -> Deps:
    """The adapter's dependencies over Kafka and the workers, with its gauges."""
    notifier, metrics = _observed(service)
    metrics.gauge("handoff_kafka_commands_in_flight", "Commands sent, decision awaited.", service.in_flight)
    metrics.gauge("handoff_kafka_workers", "Workers announced on the workers topic.", service.worker_count)
    metrics.gauge(
        "handoff_kafka_partitions_served", "Partitions with a ready worker (last check).", service.partitions_served
    )
    return Deps(commands=service, reads=service, limits=Limits(), metrics=metrics, notifier=notifier)


@asynccontextmanager
async def _embedded(kv: RocksKeyValue) -> AsyncIterator[Deps]:
    engine = Engine(kv, limits=Limits(), sync_log=kv.sync_log)
    await engine.start()
    try:
        yield _wire(engine)
    finally:
        await engine.stop()  # finishes the queued writes


@dataclass(frozen=True)
class KafkaSettings:
    """Where the Kafka adapter connects, and how long it may take at start-up."""

    bootstrap: str
    topics: Topics
    connect_timeout: float


@asynccontextmanager
async def _kafka(settings: KafkaSettings) -> AsyncIterator[Deps]:
    # Imported here: the embedded engine (and the `handoff stdio` it is spawned for) never pays for aiokafka.
    from aiokafka.errors import KafkaError

    from streams.client import KafkaService
    from streams.topiccheck import TopicMismatch

    service = KafkaService(settings.bootstrap, topics=settings.topics)
    log.info("connecting to Kafka", extra={"bootstrap": settings.bootstrap, "topics": settings.topics.prefix})
    try:
        await asyncio.wait_for(service.start(), settings.connect_timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await service.stop()
        raise KafkaUnreachable(str(exc) or type(exc).__name__) from exc
    except TopicMismatch as exc:  # never serve on topics that would route sessions to other deciders
        await service.stop()
        log.error("the topics differ from what this deployment needs", extra={"error": str(exc)})
        raise SystemExit(1) from exc
    try:
        yield _wire_kafka(service)
    finally:
        await service.stop()


def _idle_policy(data: DataDir, activity: http.Activity, idle_exit: float) -> Callable[[], Awaitable[bool]]:
    held: list[IO[str]] = []  # the exclusive client lock, kept until the process ends

    async def should_stop() -> bool:
        if activity.idle_for() < idle_exit:
            return False
        lock = try_exclusive(data.clients_lock)
        if lock is None:
            return False
        held.append(lock)
        log.info("exiting after being idle", extra={"idleSeconds": idle_exit})
        return True

    return should_stop


async def _serve_http(
    backend: AbstractAsyncContextManager[Deps], data: DataDir, ns: argparse.Namespace, env: Env
) -> None:
    async with backend as deps:
        activity = http.Activity()
        app = http.build_app(build_server(deps), deps, activity, ns.host, fast_path=env.fast_path)
        sock = http.bind(ns.host, ns.port)
        tune_gc_for_serving()

        def started(url: str) -> None:
            launch.advertise(data, url)
            where = {"url": url, "dataDir": str(data.root), "pid": os.getpid(), "fastPath": env.fast_path}
            log.info("serving MCP over HTTP", extra=where)

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


async def _serve_stdio(backend: AbstractAsyncContextManager[Deps], close: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    async with backend as deps:
        log.info("serving MCP over stdio")
        serving = asyncio.create_task(_stdio_session(build_server(deps)))
        waiter = asyncio.create_task(signalled.wait())
        await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not signalled.is_set():
            return await serving  # stdin closed: the normal end
        log.info("stopping on a signal")
        serving.cancel()
    # The engine has finished its queued writes (or the Kafka clients are closed). The SDK reads stdin
    # in a thread that no cancellation can interrupt, so close the store here and leave without waiting.
    close()
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


def kafka_settings(bootstrap: str, environ: Mapping[str, str], replication: Replication | None = None) -> KafkaSettings:
    """The Kafka settings of `serve --kafka`, from the environment (shared with `handoff worker`)."""
    from streams.topics import DEFAULT_PARTITIONS, Topics

    return KafkaSettings(
        bootstrap=bootstrap,
        topics=Topics(
            environ.get("HANDOFF_KAFKA_TOPIC_PREFIX") or "handoff",
            int(environ.get("HANDOFF_KAFKA_PARTITIONS") or DEFAULT_PARTITIONS),
            replication or Replication.from_env(environ),
        ),
        connect_timeout=kafka_connect_timeout(environ),
    )


def _run(main: Coroutine[Any, Any, None]) -> int:
    try:
        asyncio.run(main)
    except KafkaUnreachable as exc:
        log.error(KAFKA_UNREACHABLE, extra={"error": str(exc)})
        return 1
    except OSError as exc:
        log.error("cannot serve", extra={"error": str(exc)})
        if exc.errno == errno.EADDRINUSE:
            log.error("the address is taken, perhaps by another `handoff serve`; pass another --port, or stop that one")
        return 1
    return 0


def serve(ns: argparse.Namespace, env: Env) -> int:
    """`handoff serve`."""
    data = DataDir(ns.data_dir or env.data_dir)
    bootstrap = ns.kafka or env.kafka_bootstrap
    if bootstrap:
        backend = _kafka(kafka_settings(bootstrap, os.environ, from_arguments(ns, os.environ)))
        if ns.transport == "stdio":
            return _run(_serve_stdio(backend, logging.shutdown))
        data.root.mkdir(parents=True, exist_ok=True)  # only engine.json, for `handoff stdio` relays
        return _run(_serve_http(backend, data, ns, env))
    kv = _open_store(data)
    if kv is None:
        return 1
    try:
        if ns.transport == "stdio":
            return _run(_serve_stdio(_embedded(kv), kv.close))
        return _run(_serve_http(_embedded(kv), data, ns, env))
    finally:
        kv.close()
