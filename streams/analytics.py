"""`handoff analytics --kafka BOOTSTRAP`: a faust-streaming app folding ``handoff.events`` into analytics.

A read-only consumer of the log: it decides nothing. Each event of partition p goes through the same
fold as the embedded engine's (`projections.analytics`) into partition p's part of one faust table
(RocksDB store, rocksdict driver, a compact-only changelog). One table, not one per kind of key: its
changelog then holds the writes of partition p in the order they were made, so after a SIGKILL what
survives is a prefix of them, and the fold (idempotent per key, keyed by session and version)
completes the event it was in without counting anything twice. The table is the window store: the
fold buckets by the events' hour, so the 1h, 24h and 7d windows are sums of hourly buckets, and
buckets older than 7 days are pruned when the clock enters a new hour.

Answers are served on ``GET /analytics?window=24h&agent=NAME`` of faust's web server (``--web-port``),
which `serve --kafka --analytics-url` reads.

Each start rebuilds the table from its changelog and folds the log again from its first offset:
faust sends changelog writes without waiting for them (and writes its RocksDB files at once), so
after a SIGKILL neither the local files nor the committed offsets can be trusted to match the
changelog (seen here: resuming from either lost events). The changelog holds a prefix of the
writes; folding the whole log again over it completes what is missing, and skips the rest by
session and version. So the RocksDB files are removed at start, and each run consumes under a group
of its own (the faust app id; the changelog topic keeps one fixed name).

faust can drop a message fetched while its recovery is still seeking. An event whose session the
table lacks earlier versions of is folded only after them, read back from the log
(`streams.analytics_gaps`); and once each rebalance has completed, the app reads the log from the
start once more (`reread_after_recovery`), for a dropped event that no later version follows.

The app connects to Kafka as the workers do: the same ``--kafka-*`` flags and ``HANDOFF_KAFKA_*``
variables (`streams.security`), given to faust as its broker credentials (SASL and/or a TLS context),
which faust passes to its consumer, its producer and the client that creates its topics. Credentials
or a certificate the broker refuses stop it at start-up with exit status 1 and the reason.

The consumer reads committed records only: the deciders write the log in Kafka transactions, and
an aborted one must not be counted. faust reads committed only in its exactly-once mode, so this
app's transport opens its consumer with ``read_committed`` (aiokafka's isolation level, set before
the consumer starts).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types.auth import CredentialsT

from handoff import logs
from handoff.accel import gate
from handoff.config import read_env
from handoff.kernel.codec import decode_envelope
from projections.analytics import WINDOW_HOURS, answer, hour_of, prune, shard_view
from streams import security as kafka_security
from streams.analytics_gaps import KafkaReadBack, fold_without_gaps
from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import DEFAULT_PARTITIONS, Topics

log = logging.getLogger(__name__)

TABLE = "analytics"
STORE_DIR = "tables"  # under --data-dir: faust's RocksDB files, rebuilt from the changelog at every start


@dataclass(frozen=True)
class AnalyticsConfig:
    """Where the app reads, keeps its tables and serves its answers."""

    bootstrap: str
    topics: Topics
    data_dir: Path
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    security: KafkaSecurity = PLAINTEXT  # how its Kafka clients authenticate (streams.security)


def faust_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """The workers' Kafka security settings as faust's ``broker_credentials`` (None: PLAINTEXT)."""
    if security.protocol == "PLAINTEXT":
        return None
    context = security.client_kwargs().get("ssl_context")  # the same verified TLS context as every other client
    if not security.sasl:
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(  # SASL_SSL when given a TLS context, else SASL_PLAINTEXT
        username=security.sasl_username, password=security.sasl_password, mechanism=security.sasl_mechanism,
        ssl_context=context,
    )  # fmt: skip


def build_app(config: AnalyticsConfig) -> faust.App:
    """The faust app: the events topic, the analytics table, the folding agent and the answer page."""
    name = f"{config.topics.prefix}.analytics"
    app = faust.App(
        f"{name}.{uuid.uuid4().hex[:12]}",  # a fresh consumer group: every run folds the log from the start
        broker=f"kafka://{config.bootstrap}",
        broker_credentials=faust_credentials(config.security),
        store="rocksdb://",
        datadir=str(config.data_dir / STORE_DIR),
        web_enabled=True,
        web_bind=config.web_host,
        web_host=config.web_host,
        web_port=config.web_port,
        web_in_thread=False,
        topic_partitions=config.topics.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        # Each run is a group of its own (above), so no killed predecessor's session holds the partitions; 10 s
        # rather than faust's 60 s bounds how long a member that stopped heartbeating keeps them.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
    )
    if gate.enabled(gate.FAUST_READ_COMMITTED):
        from handoff.accel.faust_read_committed import ReadCommittedTransport  # private names of this version

        app.transport = ReadCommittedTransport(app.conf.broker_consumer, app)
    events = app.topic(
        config.topics.events, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    schema: faust.Schema[str, Any] = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")
    changelog = app.topic(
        f"{name}-{TABLE}-changelog", schema=schema, partitions=config.topics.partitions,
        compacting=True, deleting=False, internal=True, acks=False, maxsize=131_072, allow_empty=True,
        config={"cleanup.policy": "compact"},  # never time-based retention (faust issue #597)
    )  # fmt: skip
    table = app.Table(
        TABLE,
        default=None,
        partitions=config.topics.partitions,
        schema=schema,
        options={"driver": "rocksdict"},
        changelog_topic=changelog,
    )
    pruned: dict[int, int] = {}
    read_back = KafkaReadBack(config.bootstrap, config.topics.events, config.security)

    @app.agent(events)
    async def fold(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            view = shard_view(table, str(partition))
            try:
                await fold_without_gaps(view, decode_envelope(event.value), partition, event.message.offset, read_back)
            except Exception:
                log.exception("cannot fold an event", extra={"partition": partition, "offset": event.message.offset})
            now = time.time()
            if pruned.get(partition) != hour_of(now):
                pruned[partition] = hour_of(now)
                prune(view, now)

    reread_after_recovery(app, config.topics.events)

    @app.page("/analytics")
    async def analytics(web: Any, request: Any) -> Any:
        window = request.query.get("window", "24h")
        if window not in WINDOW_HOURS:
            return web.json({"error": f"window must be one of {sorted(WINDOW_HOURS)}"}, status=400)
        views = [shard_view(table, str(p)) for p in range(config.topics.partitions)]
        return web.json(answer(views, window, request.query.get("agent"), time.time()))

    return app


def reread_after_recovery(app: Any, events: str) -> None:
    """Once after each rebalance has completed, read every partition of `events` again from its first offset.

    faust (0.15) can drop a message that its fetcher delivers while a rebalance's recovery is still
    seeking the stream partitions (seen here under load: one event of a session skipped at start-up,
    its later versions folded). The first later version reads it back (`streams.analytics_gaps`); a
    dropped event that was its session's last so far has no later version, and reading the log again
    finds it; the fold skips everything else. Best effort: faust can drop part of this reading too
    (see `streams.analytics_gaps`). A one-second timer, so it runs once the app says it is ready.
    """
    rewound: set[int] = set()  # the consumer generations after which the log was read again

    async def reread() -> None:
        generation = app.consumer_generation_id
        if app.rebalancing or generation in rewound or not app.tables.recovery.completed.is_set():
            return
        rewound.add(generation)
        log.info("reading the events again from the start after the rebalance", extra={"generation": generation})
        for tp in app.consumer.assignment():
            if tp.topic == events:
                await app.consumer.seek(tp, 0)

    app.timer(1.0)(reread)


def build_parser() -> argparse.ArgumentParser:
    """Options of ``handoff analytics``."""
    parser = argparse.ArgumentParser(
        prog="handoff analytics",
        description="Kafka mode: a faust-streaming app that folds handoff.events into the analytics of CONTRACT §10 "
        "and serves them to `handoff serve --kafka --analytics-url http://HOST:PORT`.",
        epilog="example: handoff analytics --kafka 127.0.0.1:9092 --data-dir ./analytics --web-port 6066\n"
        "The Kafka security options are those of `handoff worker` (docs/kafka-security.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kafka", metavar="BOOTSTRAP", default=os.environ.get("HANDOFF_KAFKA_BOOTSTRAP"))
    parser.add_argument("--data-dir", type=Path, help="its RocksDB tables (default: the data dir + /analytics)")
    parser.add_argument("--web-host", default="127.0.0.1", help="interface of the answer endpoint")
    parser.add_argument("--web-port", type=int, default=6066, help="port of the answer endpoint (default: 6066)")
    parser.add_argument("--topic-prefix", default=os.environ.get("HANDOFF_KAFKA_TOPIC_PREFIX") or "handoff")
    parser.add_argument(
        "--partitions", type=int, default=int(os.environ.get("HANDOFF_KAFKA_PARTITIONS") or DEFAULT_PARTITIONS)
    )
    kafka_security.add_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``handoff analytics --kafka HOST:PORT [--data-dir DIR] [--web-port N]``."""
    ns = build_parser().parse_args(argv)
    if not ns.kafka:
        print("handoff analytics: --kafka BOOTSTRAP (or HANDOFF_KAFKA_BOOTSTRAP) is required", file=sys.stderr)
        return 2
    try:
        security = KafkaSecurity.from_options(ns, os.environ)
    except ValueError as exc:  # settings that do not fit together
        print(f"handoff analytics: {exc}", file=sys.stderr)
        return 2
    env = read_env()
    logs.configure(env.log_level)
    config = AnalyticsConfig(
        bootstrap=ns.kafka, topics=Topics(ns.topic_prefix, ns.partitions),
        data_dir=ns.data_dir or env.data_dir / "analytics", web_host=ns.web_host, web_port=ns.web_port,
        security=security,
    )  # fmt: skip
    refused = refusal(config)
    if refused:
        print(f"handoff analytics: {refused}", file=sys.stderr)
        return 1
    shutil.rmtree(config.data_dir / STORE_DIR, ignore_errors=True)  # see the module docstring: the changelog rules
    config.data_dir.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(build_app(config), loglevel=env.log_level, quiet=True)
    worker.execute_from_commandline()  # runs until SIGTERM / SIGINT, then exits the process
    return 0


def refusal(config: AnalyticsConfig) -> str | None:
    """The reason Kafka refuses this app's credentials or TLS (one connection tried), else None.

    faust retries a refused login forever with nothing but log lines; the workers stop at once and say
    why, and so does this app. A broker that is merely not up yet is left to faust's own retries.
    """
    if config.security.protocol == "PLAINTEXT":
        return None
    why = asyncio.run(kafka_security.diagnose(config.bootstrap, config.security))
    return kafka_security.refusal(why) if why else None
