"""How a worker spends its transactions: a few open at once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from handoff.kernel.commands import AppendContext, RegisterSession
from kafka.support import Broker, keys_on_every_partition, running_service, running_worker
from streams.topics import Topics

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kafka_accel", [True, False], ids=["accelerated", "public"])
async def test_with_one_transaction_at_a_time_every_partition_is_still_decided_exactly(
    broker: Broker, tmp_path: Path, kafka_accel: bool
) -> None:
    topics = Topics(f"t{uuid.uuid4().hex[:8]}", 4)
    async with running_worker(
        broker.bootstrap, topics, tmp_path / "w", transactions=1, kafka_accel=kafka_accel
    ) as worker:
        async with running_service(broker.bootstrap, topics) as svc:
            keys = keys_on_every_partition(topics, "s", 4)  # 16 random keys left a partition idle in 4% of runs
            assert len({topics.partition_for(k) for k in keys}) == 4  # every partition has work
            await asyncio.gather(*(svc.submit(RegisterSession(session_key=k, agent_from="a")) for k in keys))
            outcomes = await asyncio.gather(
                *(
                    svc.submit(AppendContext(session_key=k, context_type="message", content=f"{k} {i}"))
                    for i in range(10)
                    for k in keys
                )
            )
            for key in keys:
                numbers = sorted(o.envelope.version for o in outcomes if o.envelope.session_key == key)
                assert numbers == list(range(2, 12))
                session = await svc.session(key)
                assert session is not None and session.version == 11
    assert worker.config.transactions == 1 and worker.config.kafka_accel == kafka_accel
