"""The composition root of ``handoff serve``: builds the embedded engine or the Kafka adapter, then serves MCP.

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
import dataclasses
import errno
import logging
import os
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from handoff import anchoroptions, authoptions, codebaseoptions, hardenoptions
from handoff.anchoroptions import AnchorOptions
from handoff.audit.purge import SPOOL as PURGE_SPOOL
from handoff.audit.purge import serve_purge_requests
from handoff.bootstrap import jobs
from handoff.config import KAFKA_UNREACHABLE, DataDir, Env, KafkaUnreachable, kafka_connect_timeout, switched_on
from handoff.engine.analytics import EmbeddedAnalytics
from handoff.engine.engine import Engine
from handoff.engine.jobs import expiry_health
from handoff.engine.service import EmbeddedService
from handoff.kernel.types import Limits
from handoff.mcp import localtrust
from handoff.mcp.auth import Auth, JwtSettings, JwtVerifier, StoreVerifier
from handoff.mcp.deps import Deps
from handoff.mcp.serve import serve_http, serve_stdio
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from handoff.observation import observe_engine, observe_kafka
from handoff.storage.kv import RocksKeyValue
from handoff.tokens import data_dir_store
from streams.replication import Replication, from_arguments

if TYPE_CHECKING:
    from streams.client import KafkaService
    from streams.security import KafkaSecurity
    from streams.topics import Topics

log = logging.getLogger("handoff")


def main(ns: argparse.Namespace, env: Env) -> int:
    """`handoff serve`."""
    data = DataDir(ns.data_dir or env.data_dir)
    bootstrap = ns.kafka or env.kafka_bootstrap
    if bootstrap:
        try:
            kafka_settings(bootstrap, os.environ, ns)  # refuse security settings that do not fit, before anything
        except ValueError as exc:
            log.error(str(exc))
            return 2
    auth = _auth(ns, data, bootstrap) if ns.transport == "http" else None
    if isinstance(auth, str):
        log.error(auth)
        return 2
    try:
        hardening = hardenoptions.hardening(ns, os.environ)
        roots = codebaseoptions.codebase_roots(ns, os.environ)
        anchors = anchoroptions.anchor_options(ns)
        jobs.check_anchor_key(anchors)
    except ValueError as exc:
        log.error(str(exc))
        return 2
    if bootstrap:
        settings = kafka_settings(bootstrap, os.environ, ns)
        if getattr(ns, "analytics_url", None):
            settings = dataclasses.replace(settings, analytics_url=ns.analytics_url)
        backend = _with_codebase(_kafka(settings), roots)
        if ns.transport == "stdio":
            return _run(serve_stdio(backend, logging.shutdown))
        localtrust.secure_data_dir(data.root)  # only engine.json, for `handoff stdio` relays
        return _run(serve_http(backend, data, ns, env, auth, hardening))
    kv = _open_store(data)
    if kv is None:
        return 1
    try:
        if ns.transport == "stdio":
            return _run(serve_stdio(_with_codebase(_embedded(kv, data, anchors), roots), kv.close))
        return _run(serve_http(_with_codebase(_embedded(kv, data, anchors), roots), data, ns, env, auth, hardening))
    finally:
        kv.close()


def _auth(ns: argparse.Namespace, data: DataDir, bootstrap: str | None) -> Auth | None | str:
    """The bearer authentication `serve` is asked for, or the sentence saying why it must not start.

    Tokens come from the data dir's file, or in Kafka mode from the installation's token topic.
    """
    try:
        mode = authoptions.auth_mode(ns, os.environ)
    except ValueError as exc:
        return str(exc)
    refused = authoptions.refusal(mode, ns)
    if refused is not None:
        return refused
    if mode == "token" and bootstrap:
        from streams.tokens import KafkaTokenStore

        kafka = kafka_settings(bootstrap, os.environ, ns)
        store = KafkaTokenStore(bootstrap, kafka.topics.prefix, security=kafka.security)
        return Auth(StoreVerifier(store), lifespan=store)
    if mode == "token":
        return Auth(StoreVerifier(data_dir_store(data.root)))
    if mode == "jwt":
        settings = JwtSettings(
            ns.jwt_jwks_url, ns.jwt_issuer, ns.jwt_audience, ns.jwt_agent_claim or "sub", ns.jwt_role_claim
        )
        return Auth(JwtVerifier(settings), authorization_servers=[ns.jwt_issuer] if ns.jwt_issuer else [])
    return None


def _observed(service: EmbeddedService | KafkaService) -> tuple[Notifier, Metrics]:
    """A notifier fed by the service's commits, and the metrics with the gauge both modes share."""
    notifier = Notifier()
    service.add_listener(notifier.on_change)
    metrics = Metrics()
    metrics.gauge(
        "handoff_resource_subscriptions", "Resource subscriptions (2025-11-25 era).", notifier.subscriber_count
    )
    return notifier, metrics


def _wire(engine: Engine, data: DataDir) -> Deps:
    """The adapter's dependencies over the embedded engine, with its gauges and health checks (before it starts)."""
    service = EmbeddedService(engine)
    notifier, metrics = _observed(service)
    metrics.gauge("handoff_engine_running", "1 while the engine takes writes.", lambda: float(engine.running))
    metrics.gauge("handoff_log_position", "Events committed to the log.", lambda: float(engine.position))
    health = observe_engine(metrics, engine, data.root, os.environ)
    analytics = EmbeddedAnalytics(engine)
    return Deps(
        commands=service, reads=service, limits=engine.limits, metrics=metrics, notifier=notifier, health=health,
        analytics=analytics,
    )  # fmt: skip


def _wire_kafka(service: KafkaService, analytics_url: str | None) -> Deps:
    """The adapter's dependencies over Kafka and the workers, with its gauges; analytics from the analytics app."""
    from streams.analytics_client import AnalyticsClient

    notifier, metrics = _observed(service)
    metrics.gauge("handoff_kafka_commands_in_flight", "Commands sent, decision awaited.", service.in_flight)
    metrics.gauge("handoff_kafka_workers", "Workers announced on the workers topic.", service.worker_count)
    metrics.gauge(
        "handoff_kafka_partitions_served", "Partitions with a ready worker (last check).", service.partitions_served
    )
    health = observe_kafka(service)
    analytics = None if analytics_url is None else AnalyticsClient(analytics_url)
    return Deps(
        commands=service, reads=service, limits=Limits(), metrics=metrics, notifier=notifier, health=health,
        analytics=analytics,
    )  # fmt: skip


@asynccontextmanager
async def _embedded(kv: RocksKeyValue, data: DataDir, anchors: AnchorOptions | None) -> AsyncIterator[Deps]:
    # No expiry timer in the engine: the job runner drives its sweeps (session-expiry, handoff-expiry).
    engine = Engine(kv, limits=Limits(), sync_log=kv.sync_log, sweep_every=None)
    operations, runner = jobs.embedded_jobs(engine, anchors)
    deps = dataclasses.replace(_wire(engine, data), operations=operations)
    deps.health.add("sweeper", expiry_health(runner))  # the expiry jobs now run here
    await engine.start()
    # `handoff purge` beside this engine: its requests come through the data dir (handoff.audit.purge)
    purges = asyncio.create_task(serve_purge_requests(engine.submit, data.root / PURGE_SPOOL), name="handoff-purge")
    try:
        async with deps.metrics.loop_lag.running(), jobs.running(runner):
            yield deps
    finally:
        purges.cancel()
        await engine.stop()  # finishes the queued writes


@asynccontextmanager
async def _with_codebase(backend: AbstractAsyncContextManager[Deps], roots: tuple[str, ...]) -> AsyncIterator[Deps]:
    """The backend's dependencies, with the directories analyze_codebase may read (read where this process runs)."""
    async with backend as deps:
        if roots:
            log.info("analyze_codebase reads under", extra={"codebaseRoots": list(roots)})
        yield dataclasses.replace(deps, codebase_roots=roots)


def _plaintext() -> KafkaSecurity:
    from streams.security import PLAINTEXT  # imported late: the embedded engine never loads the Kafka modules

    return PLAINTEXT


@dataclass(frozen=True)
class KafkaSettings:
    """Where the Kafka adapter connects, and how long it may take at start-up."""

    bootstrap: str
    topics: Topics
    connect_timeout: float
    kafka_accel: bool = True
    analytics_url: str | None = None  # `handoff analytics`'s endpoint; None: get_analytics is UNAVAILABLE
    security: KafkaSecurity = field(default_factory=_plaintext)


@asynccontextmanager
async def _kafka(settings: KafkaSettings) -> AsyncIterator[Deps]:
    # Imported here: the embedded engine (and the `handoff stdio` it is spawned for) never pays for aiokafka.
    from aiokafka.errors import KafkaError

    from streams.client import KafkaService
    from streams.topiccheck import TopicMismatch

    service = KafkaService(
        settings.bootstrap, topics=settings.topics, kafka_accel=settings.kafka_accel, security=settings.security
    )
    log.info("connecting to Kafka", extra={"bootstrap": settings.bootstrap, "topics": settings.topics.prefix})
    try:
        await asyncio.wait_for(service.start(), settings.connect_timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await service.stop()
        from streams.security import diagnose

        why = await diagnose(settings.bootstrap, settings.security)  # e.g. the credentials refused
        raise KafkaUnreachable("; ".join(filter(None, [str(exc) or type(exc).__name__, why]))) from exc
    except TopicMismatch as exc:  # never serve on topics that would route sessions to other deciders
        await service.stop()
        log.error("the topics differ from what this deployment needs", extra={"error": str(exc)})
        raise SystemExit(1) from exc
    from streams.operations import KafkaOperations, OperationsFeed

    feed = OperationsFeed(settings.bootstrap, settings.topics.prefix, security=settings.security)
    feed.hooks.append(jobs.apply_monitoring)
    operations = KafkaOperations(feed, service.directory)
    try:
        try:
            await asyncio.wait_for(operations.start(), settings.connect_timeout)  # the jobs' configuration
        except (KafkaError, OSError, TimeoutError) as exc:
            raise KafkaUnreachable(f"the operations topic: {exc or type(exc).__name__}") from exc
        deps = dataclasses.replace(_wire_kafka(service, settings.analytics_url), operations=operations)
        async with deps.metrics.loop_lag.running():
            yield deps
    finally:
        await operations.stop()
        await service.stop()


def _open_store(data: DataDir) -> RocksKeyValue | None:
    localtrust.secure_data_dir(data.root)
    try:
        return RocksKeyValue(str(data.db))
    except Exception as exc:  # noqa: BLE001 - rocksdict raises a bare Exception, e.g. when the DB is locked
        log.error("cannot open the database", extra={"path": str(data.db), "error": str(exc)})
        if "lock" in str(exc).lower():
            log.error("another engine holds this data dir; use `handoff stdio` to share it, or another --data-dir")
        return None


def kafka_settings(bootstrap: str, environ: Mapping[str, str], ns: argparse.Namespace | None = None) -> KafkaSettings:
    """The Kafka settings of `serve --kafka`, from its flags and the environment (shared with `handoff worker`).

    ValueError when the security settings do not fit together (see `streams.security`).
    """
    from streams.security import KafkaSecurity
    from streams.topics import DEFAULT_PARTITIONS, Topics

    return KafkaSettings(
        bootstrap=bootstrap,
        topics=Topics(
            environ.get("HANDOFF_KAFKA_TOPIC_PREFIX") or "handoff",
            int(environ.get("HANDOFF_KAFKA_PARTITIONS") or DEFAULT_PARTITIONS),
            from_arguments(ns, environ) if ns is not None else Replication.from_env(environ),
        ),
        connect_timeout=kafka_connect_timeout(environ),
        kafka_accel=switched_on(environ.get("HANDOFF_KAFKA_ACCEL")),
        analytics_url=environ.get("HANDOFF_ANALYTICS_URL") or None,
        security=KafkaSecurity.from_options(ns, environ),
    )


def _run(main: Coroutine[Any, Any, None]) -> int:
    try:
        asyncio.run(main)
    except KafkaUnreachable as exc:
        from streams.security import refusal  # no Kafka client: words only

        log.error(refusal(str(exc)) or KAFKA_UNREACHABLE, extra={"error": str(exc)})
        return 1
    except OSError as exc:
        log.error("cannot serve", extra={"error": str(exc)})
        if exc.errno == errno.EADDRINUSE:
            log.error("the address is taken, perhaps by another `handoff serve`; pass another --port, or stop that one")
        return 1
    return 0
