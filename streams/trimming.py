"""`CommandTrimmer`: deletes decided command records from ``handoff.commands``, so the queue holds no old content.

Command records carry what clients sent in the clear (entry content, metadata, request data, results),
and the commands topic keeps records for days. Once a decider's transaction has committed, every record
of its partition below the transaction's decided position is done with: the next owner resumes from
that position (``handoff.progress`` and the group offset, both written by that transaction), and a
command sent again is answered from the store, not from the old record. So the records below it may go,
with the Admin API's DeleteRecords (the partition's log start offset moves up; it never moves down, so
a late or repeated call from a former owner is harmless).

A position is only ever handed to `decided` after its transaction committed, so nothing undecided is
deleted. Deletion runs every `every` seconds for every partition that decided something since, and at
once (on the next turn of the event loop) for a partition whose transaction erased a session: after a
purge or a retention erasure the commands that carried the session's content are gone a few milliseconds
after the erasure's reply, instead of at the next round.

Replies are not trimmed here: a reply's body is sealed under a key that only its command record (and the
waiting submitter) holds (`streams.records`), so deleting the command records is what makes the replies
unreadable too.

DeleteRecords needs the ``Delete`` operation on the commands topic. A principal without it gets one
WARNING naming that ACL; the worker carries on deciding, and the commands expire by the topic's retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)  # fmt: skip
from aiokafka.structs import TopicPartition

from streams.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger("handoff.worker")

TRIM_EVERY = 30.0  # seconds between rounds: the commands topic holds little more than the undecided records


class CommandTrimmer:
    """Deletes each partition's decided command records once their transaction committed."""

    def __init__(
        self, bootstrap: str, topic: str, *, security: KafkaSecurity = PLAINTEXT, every: float = TRIM_EVERY,
        admin: Any = None,
    ) -> None:  # fmt: skip
        """`admin` replaces the admin client built from `bootstrap` and `security` (tests)."""
        self.topic = topic
        self.every = every
        self._admin = admin or AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=10_000, **security.client_kwargs()
        )
        self._due: dict[int, int] = {}  # partition -> decided position (records below it may go)
        self._done: dict[int, int] = {}  # partition -> log start offset this trimmer has reached
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._denied = False  # the missing ACL is named once
        self.trimmed = 0  # DeleteRecords calls that moved a log start offset (a test's and a reader's figure)

    async def start(self) -> None:
        """Connect the admin client and start the rounds."""
        await self._admin.start()
        self._task = asyncio.create_task(self._run(), name="handoff-command-trim")

    async def stop(self) -> None:
        """Stop the rounds (what is due stays in the topic until the partition's next owner trims)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._admin.close()

    def decided(self, partition: int, next_offset: int, *, erased: bool = False) -> None:
        """A committed transaction decided partition `partition` up to `next_offset` (exclusive).

        `erased`: the transaction erased a session, so trim now rather than at the next round.
        """
        if next_offset > self._due.get(partition, 0):
            self._due[partition] = next_offset
        if erased:
            self._wake.set()

    async def trim(self) -> int:
        """Delete what is due on every partition; returns how many partitions moved (errors are logged)."""
        due = {p: n for p, n in self._due.items() if n > self._done.get(p, 0)}
        if not due:
            return 0
        request = {TopicPartition(self.topic, p): RecordsToDelete(n) for p, n in due.items()}
        try:
            starts = await self._admin.delete_records(request)
        except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError) as exc:
            self._refused(exc)
            return 0
        except KafkaError as exc:  # a leader moved or the broker is away: the next round tries again
            log.info("deleting decided command records failed; retrying", extra={"error": repr(exc)})
            return 0
        for tp, start in starts.items():
            self._done[tp.partition] = max(self._done.get(tp.partition, 0), start)
        self.trimmed += len(starts)
        return len(starts)

    def _refused(self, exc: KafkaError) -> None:
        if not self._denied:
            self._denied = True
            log.warning(
                "cannot delete decided command records: the worker's principal needs the Delete ACL on topic %s "
                "(until then they stay for the topic's retention.ms)", self.topic, extra={"error": repr(exc)},
            )  # fmt: skip

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.every)
            self._wake.clear()
            try:
                await self.trim()
            except Exception:  # the agent's guard: trimming must never stop the worker
                log.exception("deleting decided command records failed")
