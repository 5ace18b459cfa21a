"""The analytics app's guard against folding past a gap: a session's skipped versions, read back from the log.

faust (0.15) can drop a message fetched while a rebalance's recovery is still seeking (seen here:
one version of a session skipped, its later versions delivered). Folding a later version past the
gap would leave the skipped one out for good (`projections.analytics.fold_in_order`).

So before an event is folded, the versions of its session that the table lacks below it
(`missing_before`) are read back from its partition, below its offset, by a group-less
``read_committed`` consumer of this module's own. faust's consumer is not sought back: after a seek
it still delivers the rest of the batch it was delivering and takes its read offset from it, then
drops every record below that offset when it comes again, so the very records asked for can be lost.
The reading goes back from the event in windows four times larger each time and stops at the window
that holds the first missing version or an older one of the session, or at the partition's first
offset: its cost is the distance back to the gap, not the partition's length. The events read back
are folded in version order, then the event. Nothing is counted twice (the fold skips what it has
applied, also a read-back event that faust delivers later) and nothing loops (an event causes at
most one read-back). A version not found is not in the log (a topic truncated by hand), or one not
found within `READ_BACK_SECONDS` is too far back to hold the stream for: the event is folded past
it, with a WARNING naming the session and the versions. A read-back that fails (Kafka refuses it)
leaves the event unfolded, which the agent logs: its next version, or the next run, reads back again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from handoff.kernel.codec import decode_envelope
from handoff.kernel.errors import CodecError
from handoff.kernel.events import Envelope
from projections.analytics import AnalyticsView, fold_in_order, missing_before
from streams.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

FIRST_WINDOW = 1024  # records read back first; each window further back is four times larger
READ_BACK_SECONDS = 120.0  # a read-back that takes longer is given up: the event is folded past its gap
POLL_MS = 500

ReadRange = Callable[[int, int, bytes], Awaitable[list[bytes]]]  # (start, end, key) -> values with the key


class ReadBack(Protocol):
    """The events of a session with versions in `missing` that a partition holds below an offset."""

    async def __call__(self, partition: int, before: int, session: str, missing: range) -> list[Envelope]:
        """Those events, in version order (the ones the log holds)."""


async def fold_without_gaps(view: AnalyticsView, env: Envelope, partition: int, offset: int, read: ReadBack) -> None:
    """Fold `env` (at `offset` of `partition`) after the earlier versions of its session that `view` lacks."""
    missing = missing_before(view, env)
    earlier: list[Envelope] = []
    why = "not in the log"
    if missing:
        try:
            earlier = await read(partition, offset, env.session_key, missing)
        except TimeoutError:  # too far back to wait for: the app keeps folding
            why = f"not read back within {READ_BACK_SECONDS:g} s"
    gone = fold_in_order(view, env, earlier)
    # The facts in the message too: faust's worker formats log lines without the extra fields.
    where = {"partition": partition, "offset": offset, "sessionKey": env.session_key, "version": env.version}
    if gone:
        log.warning(
            "versions %s of session %s were not found (%s): folded version %d (partition %d offset %d) without them",
            gone, env.session_key, why, env.version, partition, offset,
            extra={**where, "missingVersions": gone, "reason": why},
        )  # fmt: skip
    elif missing:
        log.info(
            "versions %s of session %s skipped by the stream were read back and folded before version %d",
            list(missing), env.session_key, env.version, extra={**where, "readBack": list(missing)},
        )  # fmt: skip


async def read_back(read: ReadRange, first: int, before: int, session: str, missing: range) -> list[Envelope]:
    """The events of `session` with versions in `missing` in offsets [first, before), read backwards by windows."""
    found: dict[int, Envelope] = {}
    key, end, size = session.encode(), before, FIRST_WINDOW
    while end > first and min(found, default=missing.stop) > missing.start:
        start = max(first, end - size)
        for value in await read(start, end, key):
            try:
                env = decode_envelope(value)
            except CodecError:
                continue  # the stream's own fold reports it when it gets there
            if env.session_key == session and env.version < missing.stop:
                found[env.version] = env  # older versions too: one of them ends the search
        end, size = start, size * 4
    return [found[v] for v in sorted(found) if v in missing]


class KafkaReadBack:
    """`ReadBack` over a topic: a group-less ``read_committed`` consumer for each read (gaps are rare)."""

    def __init__(self, bootstrap: str, topic: str, security: KafkaSecurity = PLAINTEXT) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security

    async def __call__(self, partition: int, before: int, session: str, missing: range) -> list[Envelope]:
        """The events the partition holds below `before` (bounded by the last stable offset)."""
        tp = TopicPartition(self.topic, partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest", **self.security.client_kwargs(),
        )  # fmt: skip
        await consumer.start()
        try:
            async with asyncio.timeout(READ_BACK_SECONDS):
                consumer.assign([tp])
                first = (await consumer.beginning_offsets([tp]))[tp]
                end = min(before, (await consumer.end_offsets([tp]))[tp])

                async def values(start: int, stop: int, key: bytes) -> list[bytes]:
                    consumer.seek(tp, start)
                    out: list[bytes] = []
                    while await consumer.position(tp) < stop:
                        records = (await consumer.getmany(tp, timeout_ms=POLL_MS)).get(tp, [])
                        out += [m.value for m in records if m.offset < stop and m.key == key and m.value is not None]
                    return out

                return await read_back(values, first, end, session, missing)
        finally:
            await consumer.stop()
