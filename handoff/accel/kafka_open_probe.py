"""Whether the leaders of new partitions have opened them: a ListOffsets to each leader, as a consumer would ask.

The controller names a new partition's leader a moment before that broker has opened it; a consumer
asking for offsets then gets NOT_LEADER_OR_FOLLOWER, which aiokafka logs as an ERROR before it
retries. Asking first, here, keeps a deployment's first start free of such false alarms.

An accelerator: the admin client has no ListOffsets, so this sends one over its private connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.offset import OffsetRequest

LATEST = -1  # ListOffsets: the end of the partition


async def all_open(admin: AIOKafkaAdminClient, leaders: Mapping[int, Mapping[str, list[int]]]) -> bool:
    """Whether every leader (node → topic → partitions) answers ListOffsets for its partitions without an error."""
    return set(await offset_errors(admin, leaders)) <= {0}


async def offset_errors(admin: AIOKafkaAdminClient, leaders: Mapping[int, Mapping[str, list[int]]]) -> list[int]:
    """The error code of each partition's ListOffsets (0: none), asked of its leader (node → topic → partitions)."""
    client: Any = admin._client  # the admin client has no ListOffsets; its connection does
    codes: list[int] = []
    for node, topics in leaders.items():
        asked = [(topic, [(p, LATEST) for p in partitions]) for topic, partitions in topics.items()]
        response = await client.send(node, OffsetRequest(-1, 0, asked))
        codes += [part[1] for _, parts in response.topics for part in parts]
    return codes
