"""A decider's transaction: records appended, then all committed or none, with the consumed position inside.

Two writers give the same `Transaction`: the public one here, through aiokafka's transactional API
(``async with producer.transaction()``, ``send``, ``send_offsets_to_transaction``), and the
accelerator `handoff.accel.kafka_txn`, which sends the same transaction by hand with a third of the
event-loop wake-ups. `transactional_writer` picks the accelerator when its gate allows.

Either way a failed commit raises and the caller drops the producer: the next owner's
`init_transactions` on the same transactional id aborts whatever was left open.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiokafka.structs import OffsetAndMetadata, TopicPartition

from handoff.accel import gate


class Transaction(Protocol):
    """The records of one transaction, and the consumed position committed with them."""

    def append(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: list[Any] | None = None
    ) -> None:
        """Add a record (sent in append order within its partition)."""

    def consumed(self, group: str, tp: TopicPartition, next_offset: int) -> None:
        """Say where the consumer group `group` resumes `tp` once this transaction commits."""

    async def commit(self) -> dict[TopicPartition, int]:
        """Send everything in one transaction and commit it; the offset of each partition's last record."""


class TransactionalWriter(Protocol):
    """Runs the transactions of one started transactional producer that nothing else sends with."""

    def begin(self) -> Transaction:
        """A new, empty transaction."""


class PublicTransaction:
    """A transaction through aiokafka's public API; its records are kept until `commit` sends them."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.records: list[tuple[str, int, bytes | None, bytes | None, list[Any] | None]] = []
        self.offsets: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}

    def append(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: list[Any] | None = None
    ) -> None:
        """Add a record."""
        self.records.append((topic, partition, key, value, headers))

    def consumed(self, group: str, tp: TopicPartition, next_offset: int) -> None:
        """Commit `next_offset` as the group's offset of `tp` inside the transaction (TxnOffsetCommit)."""
        self.offsets.setdefault(group, {})[tp] = OffsetAndMetadata(next_offset, "")

    async def commit(self) -> dict[TopicPartition, int]:
        """Begin, send every record, add the offsets, commit (or abort on any error, and raise)."""
        if not self.records and not self.offsets:
            return {}
        async with self.producer.transaction():
            sent = [
                await self.producer.send(topic, value, key=key, partition=partition, headers=headers)
                for topic, partition, key, value, headers in self.records
            ]
            for group, offsets in self.offsets.items():
                await self.producer.send_offsets_to_transaction(offsets, group)
            written = await asyncio.gather(*sent)
        last: dict[TopicPartition, int] = {}
        for meta in written:
            tp = TopicPartition(meta.topic, meta.partition)
            last[tp] = max(last.get(tp, -1), meta.offset)
        return last


class PublicTransactionalWriter:
    """`TransactionalWriter` over aiokafka's public transactional API."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    def begin(self) -> PublicTransaction:
        """A new, empty transaction."""
        return PublicTransaction(self.producer)


def transactional_writer(producer: Any, *, accel: bool = True) -> TransactionalWriter:
    """The accelerator's writer when `accel` and its gate allow it, else the public one."""
    if gate.enabled(gate.KAFKA_TXN, accel):
        from handoff.accel.kafka_txn import TransactionalWriter as HandSentWriter  # this aiokafka's private names

        return HandSentWriter(producer)
    return PublicTransactionalWriter(producer)
