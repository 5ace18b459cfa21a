r"""The operations log and the job stats in a key-value store (embedded mode; a Kafka worker's stats too).

    J:log:<position:016d>      OperationsRecord (the hash-chained operations log, `handoff.kernel.operations`)
    J:stats:<job>              JobStats of this store's share of the job's runs

The log is appended only through `append`, which refuses a record that does not follow the head the
store holds, so the chain stored is always whole. Nothing else uses the ``J:`` prefix: the session
log, the views, the due-index and replay never read it.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from handoff.kernel.errors import VersionConflict
from handoff.kernel.operations import (
    JobStats,
    OperationsRecord,
    OperationsState,
    decode_record,
    encode_record,
    fold,
    follows,
)
from handoff.storage.kv import KeyValue

LOG_PREFIX = b"J:log:"
STATS_PREFIX = b"J:stats:"
_stats_decoder = msgspec.json.Decoder(JobStats)


def log_key(position: int) -> bytes:
    """Key of the record at a position of the operations log."""
    return LOG_PREFIX + b"%016d" % position


def records(kv: KeyValue) -> Iterator[OperationsRecord]:
    """The operations log, oldest first."""
    for value in kv.values(LOG_PREFIX):
        yield decode_record(value)


def stored(kv: KeyValue) -> Iterator[tuple[int | None, bytes]]:
    """The operations log as stored: each record's bytes and the position its key names (None: a stray key)."""
    for key, value in kv.scan(LOG_PREFIX):
        digits = key[len(LOG_PREFIX) :]
        yield (int(digits) if digits.isdigit() else None), value


def load(kv: KeyValue, initial: OperationsState | None = None) -> OperationsState:
    """The fold of the stored operations log (from `initial`, the state before any record)."""
    return fold(records(kv), initial)


def append(kv: KeyValue, state: OperationsState, record: OperationsRecord, sync: bool = True) -> OperationsState:
    """Store the record after `state` (the store's current fold) and return the state it leads to.

    VERSION_CONFLICT if the record does not follow the head, which only a caller with a stale state sees.
    """
    if not follows(state, record) or kv.get(log_key(record.position)) is not None:
        raise VersionConflict("the operations log moved on; decide the change again")
    kv.write([(log_key(record.position), encode_record(record))], sync)
    return fold([record], state)


def stats_key(job: str) -> bytes:
    """Key of a job's stats."""
    return STATS_PREFIX + job.encode()


def read_stats(kv: KeyValue, job: str) -> JobStats:
    """A job's stored stats (zeros before its first run)."""
    value = kv.get(stats_key(job))
    return JobStats() if value is None else _stats_decoder.decode(value)


def write_stats(kv: KeyValue, job: str, stats: JobStats) -> None:
    """Store a job's stats."""
    kv.write([(stats_key(job), msgspec.json.encode(stats))])
