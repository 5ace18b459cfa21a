"""One Kafka transaction, sent by hand: AddPartitionsToTxn, one Produce per partition leader, EndTxn.

aiokafka runs a transaction through its sender task, which wakes the event loop about 27 times and
spends about 2.3 ms of CPU per transaction on this machine's 2 cores (`--transactions` can't help:
the cost is per transaction). A decider's transaction is always the same three steps, so this module
takes them in one coroutine, each an awaited request: about a third of the wake-ups. It borrows the
started producer's connections, coordinator lookup, producer id and epoch (its `init_transactions`
still fences earlier owners), and builds record batches with its `create_batch`; it never hands
aiokafka's sender anything, so the two cannot disagree about sequence numbers.

Any failure raises, the transaction stays open at the coordinator, and the caller must drop the
producer: the next owner's `init_transactions` on the same transactional id aborts it.

An accelerator: it uses the producer's private metadata wait, transaction manager, sender and
batch builder internals. Its public counterpart is `streams.transactions.PublicTransactionalWriter`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from aiokafka.client import ConnectionGroup, CoordinationType
from aiokafka.errors import (
    ConcurrentTransactions,
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    KafkaError,
    KafkaTimeoutError,
    NoError,
    NotCoordinatorError,
    OperationNotAttempted,
    for_code,
)
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.transaction import AddPartitionsToTxnRequest, EndTxnRequest
from aiokafka.structs import TopicPartition

# After an EndTxn the coordinator still writes the commit markers, and refuses the next transaction's
# AddPartitionsToTxn with CONCURRENT_TRANSACTIONS until it has (KAFKA-5477). The markers take about a
# millisecond here: back to back, a transaction sent 1.6-2.1 AddPartitionsToTxn requests on average
# (a refusal and a retry 2 ms later); one that starts at least 1 ms after the last one ended, 1.00-1.02.
_MARKERS_S = 0.001
_CONCURRENT_RETRY_S = 0.002
_BACKOFF_S = 0.05
_COORDINATOR_MOVED = (CoordinatorNotAvailableError, NotCoordinatorError)


class Transaction:
    """The record batches of one transaction, built as records are appended; `commit` sends them."""

    def __init__(self, writer: TransactionalWriter) -> None:
        self._writer = writer
        self._batches: list[tuple[TopicPartition, Any]] = []
        self._open: dict[TopicPartition, Any] = {}

    def append(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: list[Any] | None = None
    ) -> None:
        """Add a record to the open batch of its partition, or to a new one when that batch is full."""
        tp = TopicPartition(topic, partition)
        builder = self._open.get(tp)
        if builder is not None and builder.append(timestamp=None, key=key, value=value, headers=headers) is not None:
            return
        builder = self._open[tp] = self._writer.producer.create_batch()
        builder.append(timestamp=None, key=key, value=value, headers=headers)  # the first record always fits
        self._batches.append((tp, builder))

    def consumed(self, group: str, tp: TopicPartition, next_offset: int) -> None:
        """Ignored: AddOffsetsToTxn and TxnOffsetCommit would add two round trips to every transaction.

        Use it only where the position also travels as a record of the transaction (the deciders'
        ``handoff.progress``), which is what a resuming owner reads.
        """

    async def commit(self) -> dict[TopicPartition, int]:
        """Send everything in one transaction and commit it; the offset of each partition's last record."""
        offsets = await self._writer.commit(self._batches)
        return {
            tp: offset + builder.record_count() - 1
            for (tp, builder), offset in zip(self._batches, offsets, strict=True)
        }


class TransactionalWriter:
    """Runs transactions for a started transactional `AIOKafkaProducer` that nothing else sends with."""

    def __init__(self, producer: Any, *, timeout: float = 10.0) -> None:
        self.producer = producer
        self.timeout = timeout
        self._sequences: dict[TopicPartition, int] = collections.defaultdict(int)
        self._known_topics: set[str] = set()
        self._ended = 0.0  # when the last transaction's EndTxn was answered (monotonic)
        self._failed = False

    def begin(self) -> Transaction:
        """A new, empty transaction."""
        return Transaction(self)

    async def commit(self, batches: list[tuple[TopicPartition, Any]]) -> list[int]:
        """Add the batches' partitions to a transaction, produce them, commit; each batch's base offset."""
        if self._failed:
            raise KafkaError("an earlier transaction of this producer failed; start a new producer")
        if not batches:
            return []
        self._failed = True  # until this one commits: a half-sent transaction leaves sequences unknown
        wait = self._ended + _MARKERS_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        deadline = time.monotonic() + self.timeout
        tps = sorted({tp for tp, _ in batches})
        for topic in {tp.topic for tp in tps} - self._known_topics:
            await self.producer.client._wait_on_metadata(topic)  # the producer's own metadata
            self._known_topics.add(topic)
        txn = self.producer._txn_manager  # producer id and epoch, set by init_transactions
        pid, epoch, tid = txn.producer_id, txn.producer_epoch, txn.transactional_id
        by_topic: dict[str, list[int]] = collections.defaultdict(list)
        for tp in tps:
            by_topic[tp.topic].append(tp.partition)
        await self._coordinated(
            tid, AddPartitionsToTxnRequest(tid, pid, epoch, list(by_topic.items())), add_partitions_error, deadline
        )
        offsets = await self._produce(batches, pid, epoch, tid)
        await self._coordinated(tid, EndTxnRequest(tid, pid, epoch, True), end_txn_error, deadline)
        self._ended, self._failed = time.monotonic(), False
        return offsets

    async def _produce(self, batches: list[tuple[TopicPartition, Any]], pid: int, epoch: int, tid: str) -> list[int]:
        """Each partition's batches in order: a Produce request carries at most one batch per partition."""
        offsets = [0] * len(batches)
        rounds: list[list[int]] = []
        seen: collections.Counter[TopicPartition] = collections.Counter()
        for i, (tp, _) in enumerate(batches):
            r = seen[tp]
            seen[tp] += 1
            if r == len(rounds):
                rounds.append([])
            rounds[r].append(i)
        client, cluster = self.producer.client, self.producer.client.cluster
        for indexes in rounds:
            by_node: dict[int, list[int]] = collections.defaultdict(list)
            for i in indexes:
                tp, builder = batches[i]
                leader = cluster.leader_for_partition(tp)
                if leader is None or leader == -1:
                    client.force_metadata_update()
                    raise KafkaError(f"no leader known for {tp.topic}[{tp.partition}]")
                builder._set_producer_state(pid, epoch, self._sequences[tp])  # aiokafka's builder
                by_node[leader].append(i)
            sends = [
                self._send_produce(client, node, [(i, batches[i]) for i in idx], tid) for node, idx in by_node.items()
            ]
            for result in await asyncio.gather(*sends):
                for i, offset in result:
                    offsets[i] = offset
                    tp, builder = batches[i]
                    self._sequences[tp] += builder.record_count()
        return offsets

    async def _send_produce(
        self, client: Any, node: int, items: list[tuple[int, tuple[TopicPartition, Any]]], tid: str
    ) -> list[tuple[int, int]]:
        topics: dict[str, list[tuple[int, bytes]]] = collections.defaultdict(list)
        index: dict[TopicPartition, int] = {}
        for i, (tp, builder) in items:
            topics[tp.topic].append((tp.partition, builder._build()))
            index[tp] = i
        timeout_ms = int(self.timeout * 1000)
        response = await client.send(node, ProduceRequest(tid, -1, timeout_ms, list(topics.items())))
        out: list[tuple[int, int]] = []
        for topic, partitions in response.topics:
            for info in partitions:
                partition, code, offset = info[0], info[1], info[2]
                error = for_code(code)
                if error is not NoError:
                    if getattr(error, "invalid_metadata", False):
                        client.force_metadata_update()
                    raise error(f"producing to {topic}[{partition}] in a transaction failed")
                out.append((index[TopicPartition(topic, partition)], offset))
        if len(out) != len(items):
            raise KafkaError("a produce response left partitions out")
        return out

    async def _coordinated(self, tid: str, request: Any, check: Any, deadline: float) -> None:
        """Send a request to the transaction coordinator until it is answered without a retryable error."""
        sender = self.producer._sender  # its coordinator lookup and cache
        while True:
            node = await sender._find_coordinator(CoordinationType.TRANSACTION, tid)
            error = check(await self.producer.client.send(node, request, group=ConnectionGroup.COORDINATION))
            if error is None:
                return
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"{type(request).__name__}: still {error.__name__} after {self.timeout} s")
            if error in _COORDINATOR_MOVED:
                sender._coordinator_dead(CoordinationType.TRANSACTION)
                await asyncio.sleep(_BACKOFF_S)
            elif error is ConcurrentTransactions:
                await asyncio.sleep(_CONCURRENT_RETRY_S)
            elif error is CoordinatorLoadInProgressError:
                await asyncio.sleep(_BACKOFF_S)
            else:
                raise error(f"{type(request).__name__} refused")


def add_partitions_error(response: Any) -> Any:
    """The error of an AddPartitionsToTxn response, or None.

    The coordinator adds all partitions or none: the ones it did not get to say OPERATION_NOT_ATTEMPTED,
    and the one that failed says why. That reason is the error (CONCURRENT_TRANSACTIONS is retried).
    """
    errors = {for_code(code) for _, partitions in response.errors for _, code in partitions} - {NoError}
    reasons = errors - {OperationNotAttempted}
    return min(reasons, key=lambda e: e.__name__) if reasons else (OperationNotAttempted if errors else None)


def end_txn_error(response: Any) -> Any:
    """The error of an EndTxn response, or None."""
    error = for_code(response.error_code)
    return None if error is NoError else error
