"""The composition root of ``handoff worker``: a Kafka-mode worker, run until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable

from aiokafka import errors as Errors

from handoff import anchoroptions
from handoff.bootstrap import jobs
from handoff.config import KAFKA_UNREACHABLE, Env, KafkaUnreachable, kafka_connect_timeout, keep_gc_off_the_hot_path
from handoff.engine.jobs import Action
from handoff.kernel.operations import OperationsState
from streams import replication
from streams import security as kafka_security
from streams.security import KafkaSecurity
from streams.topiccheck import TopicMismatch
from streams.topics import Topics
from streams.worker import DataDirInUse, Worker, WorkerConfig

log = logging.getLogger("handoff.worker")


def main(ns: argparse.Namespace, env: Env) -> int:
    """`handoff worker`: the worker the options describe; 1 if its data dir is held or Kafka is unreachable."""
    if not ns.kafka:
        print("handoff worker: --kafka BOOTSTRAP (or HANDOFF_KAFKA_BOOTSTRAP) is required", file=sys.stderr)
        return 2
    try:
        config = worker_config(ns, env)
    except ValueError as exc:  # Kafka security or anchor settings that do not fit together
        print(f"handoff worker: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(config))
    except (DataDirInUse, TopicMismatch) as exc:
        print(f"handoff worker: {exc}", file=sys.stderr)
        return 1
    except KafkaUnreachable as exc:
        log.error(kafka_security.refusal(str(exc)) or KAFKA_UNREACHABLE, extra={"error": str(exc)})
        return 1
    return 0


def worker_config(ns: argparse.Namespace, env: Env) -> WorkerConfig:
    """The worker that the options of `handoff worker` describe."""
    topics = Topics(ns.topic_prefix, ns.partitions, replication.from_arguments(ns, os.environ))
    anchors = anchoroptions.anchor_options(ns)  # each worker anchors the chain heads of the partitions it owns
    jobs.check_anchor_key(anchors)

    def anchor_job(stores: jobs.Stores, operations: Callable[[], OperationsState]) -> Action:
        return jobs.anchor_action(anchors, jobs.partition_heads(stores, operations))

    return WorkerConfig(
        bootstrap=ns.kafka, data_dir=ns.data_dir or env.data_dir / "worker", web_host=ns.web_host,
        web_port=ns.web_port, advertised_url=ns.advertised_url, topics=topics,
        worker_id=ns.worker_id or f"w-{uuid.uuid4().hex[:12]}", transactions=ns.transactions,
        connect_timeout=kafka_connect_timeout(os.environ),
        kafka_accel=env.kafka_accel, security=KafkaSecurity.from_options(ns, os.environ),
        job_actions={"anchor": anchor_job},  # retention: streams.jobs erases through the commands topic
        job_defaults=jobs.job_defaults(anchors),
    )  # fmt: skip


async def run(config: WorkerConfig) -> None:
    """Run a worker until SIGTERM or SIGINT, then leave the group cleanly."""
    worker = Worker(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(worker.start(), config.connect_timeout)
    except (Errors.KafkaError, TimeoutError) as exc:
        await worker.stop()
        why = await kafka_security.diagnose(config.bootstrap, config.security)  # e.g. the credentials refused
        raise KafkaUnreachable("; ".join(filter(None, [str(exc) or type(exc).__name__, why]))) from exc
    # Latency: the cyclic GC's full collections paused the loop for ~60 ms, all in-flight commands with it.
    keep_gc_off_the_hot_path(50_000, (20, 100))
    print(json.dumps({"workerId": worker.worker_id, "url": worker.url}), file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await worker.stop()
