"""Health checks of the Kafka adapter: Kafka itself, and the workers that own the partitions (see `handoff.health`)."""

from __future__ import annotations

import contextlib

import aiohttp

from handoff.health import Check, Report
from streams.client import KafkaService


def kafka_checks(service: KafkaService) -> dict[str, Check]:
    """``kafka`` (a metadata round trip) and ``workers`` (every partition owned by a ready worker, else degraded)."""

    async def kafka() -> Report:
        return {"status": "healthy", "brokers": await service.brokers()}

    async def workers() -> Report:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await service.ready()  # refreshes which worker serves which partition
        served, total = int(service.partitions_served()), service.topics.partitions
        status = "healthy" if served == total else "degraded" if served else "unhealthy"
        workers = int(service.worker_count())
        return {"status": status, "workers": workers, "partitionsServed": served, "partitions": total}

    return {"kafka": kafka, "workers": workers}
