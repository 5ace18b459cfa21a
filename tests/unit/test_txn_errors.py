"""Which error an AddPartitionsToTxn response means (`handoff.accel.kafka_txn`): the reason, not NOT_ATTEMPTED."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.errors import ConcurrentTransactions, InvalidProducerEpoch, OperationNotAttempted

from handoff.accel.kafka_txn import add_partitions_error

NONE, CONCURRENT, NOT_ATTEMPTED, FENCED_EPOCH = 0, 51, 55, 47


def _response(*codes: int) -> SimpleNamespace:
    return SimpleNamespace(errors=[("events", [(p, c) for p, c in enumerate(codes)])])


def test_all_added_is_no_error() -> None:
    assert add_partitions_error(_response(NONE, NONE, NONE)) is None


def test_the_partition_that_failed_gives_the_reason_wherever_it_stands() -> None:
    # The others say OPERATION_NOT_ATTEMPTED; taken as the error, a retryable refusal would end the transaction.
    assert add_partitions_error(_response(NOT_ATTEMPTED, CONCURRENT, NOT_ATTEMPTED)) is ConcurrentTransactions
    assert add_partitions_error(_response(FENCED_EPOCH, NOT_ATTEMPTED)) is InvalidProducerEpoch


def test_nothing_but_not_attempted_is_still_an_error() -> None:
    assert add_partitions_error(_response(NOT_ATTEMPTED)) is OperationNotAttempted
