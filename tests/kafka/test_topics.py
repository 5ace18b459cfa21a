"""Creating the topics: a deployment's first start."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.offset import OffsetRequest

from kafka.support import Broker
from streams.topics import Topics, ensure_topics


async def _offset_errors(bootstrap: str, topics: Topics) -> list[int]:
    """The error code of a ListOffsets for every partition of every topic, asked straight after creating them."""
    await ensure_topics(bootstrap, topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        asked = [(spec.name, [(p, -1) for p in range(spec.num_partitions)]) for spec in topics.specs()]  # -1: the end
        client = admin._client  # noqa: SLF001 - the admin client's connection; it has no ListOffsets of its own
        node = next(iter(client.cluster.brokers())).nodeId  # the suite's broker is a single node
        response = await client.send(node, OffsetRequest(-1, 0, asked))
        return [part[1] for _, parts in response.topics for part in parts]
    finally:
        await admin.close()


def test_new_topics_answer_for_their_offsets_as_soon_as_they_are_created(broker: Broker) -> None:
    # A partition the controller has named a leader for, but that the broker has not opened yet, answers
    # NOT_LEADER_OR_FOLLOWER (6); a worker's consumer asking in that moment makes aiokafka log an ERROR.
    for _ in range(3):
        topics = Topics(f"tp{uuid.uuid4().hex[:8]}", 8)
        errors = asyncio.run(_offset_errors(broker.bootstrap, topics))
        assert len(errors) == 4 * 8 + 2 and set(errors) == {0}, errors
