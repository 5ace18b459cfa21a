"""The operations log's chain check: each record sealed by its content, linked to the head before it, gap-free.

Job and configuration changes are recorded in their own hash chain, not in a session's, so the session
checks of `handoff.audit.verify` never see them: someone who edits a retention change to hide it would
pass. This check reads the log in order and reports each break once, as a `Problem` naming the
operations log and the position.

A Kafka operations topic may also hold records that lost a race: two processes that appended at once
both named the same head, and every process applies only the first (`handoff.kernel.operations`). Such
a record is sealed and links to the chain one position back; it is counted as superseded, not as a
break. The embedded store cannot hold one (its append refuses it), so there a record must sit under
the key of its own position.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from handoff.audit.report import Problem, Report
from handoff.kernel.operations import GENESIS, OperationsRecord, decode_record, seal_hash
from handoff.storage import operations
from handoff.storage.kv import KeyValue


class OperationsCheck:
    """Folds the log's records in order into the chain every process applies, noting each break in `report`."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.position = 0  # of the chain's head
        self.head = GENESIS
        self.chain: dict[int, str] = {}  # position -> hash of the record applied there (the log is small)

    def _fail(self, position: int, what: str, at: str | None) -> None:
        self.report.problems.append(Problem(None, None, what, at, operations=position))

    def _advance(self, record: OperationsRecord) -> None:
        self.position, self.head = record.position, record.hash
        self.chain[record.position] = record.hash

    def feed(self, data: bytes, at: str | None = None, *, stored_at: int | None = None, races: bool = False) -> None:
        """Check the next record; `stored_at` is the position its place in the store names (embedded mode).

        `races`: a sealed record one link behind the head is a race's loser, not a break (Kafka mode).
        """
        self.report.operations += 1
        expected = self.position + 1
        try:
            record = decode_record(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._fail(stored_at or expected, f"record does not decode: {exc}", at)
            return
        if stored_at is not None and record.position != stored_at:
            self._fail(stored_at, f"record stored here says position {record.position}", at)
        if record.hash != seal_hash(record):
            what = "hash is not the hash of the record's content (changed after it was sealed)"
            self._fail(record.position, what, at)
            if record.position == expected:  # follow the chain from what it claims, to report one break once
                self._advance(record)
            return
        linked = record.prev_hash == self.head
        if record.position == expected and linked:
            self._advance(record)
        elif races and record.position <= self.position and record.prev_hash == self._hash_at(record.position - 1):
            self.report.operations_superseded += 1
        elif record.position > expected:
            what = f"record is missing (the log goes from position {self.position} to {record.position})"
            self._fail(expected, what, at)
            self._advance(record)
        elif record.position == expected:
            what = "prevHash does not link to the previous record's hash (reordered or replaced)"
            self._fail(record.position, what, at)
            self._advance(record)
        else:
            self._fail(record.position, f"record is out of place (it follows position {self.position})", at)

    def _hash_at(self, position: int) -> str | None:
        return GENESIS if position == 0 else self.chain.get(position)


def check_records(records: Iterable[tuple[bytes, str | None]], report: Report, *, races: bool) -> OperationsCheck:
    """Check a log's records, in order, each with its location for a human (or None)."""
    check = OperationsCheck(report)
    for data, at in records:
        check.feed(data, at, races=races)
    return check


def check_store(kv: KeyValue, report: Report) -> OperationsCheck:
    """Check the embedded store's operations log (absent or empty is fine)."""
    check = OperationsCheck(report)
    for position, data in operations.stored(kv):
        if position is None:
            what = "a record is stored under a key that names no position"
            report.problems.append(Problem(None, None, what, operations=check.position + 1))
            continue
        check.feed(data, stored_at=position)
    return check
