"""The decider of one partition: command records in, one Kafka transaction out.

For a batch of command records of partition p it decides every command with the embedded engine's
`decide_batch` (the same kernel and projections, nothing re-implemented), then, in ONE transaction
of the partition's transactional producer (`streams.transactions`: aiokafka's public API, or the
hand-sent accelerator), appends the events to ``handoff.events`` (partition p), sends the replies
and dead letters (each reply sealed under its record's replyKey, when it has one: `streams.records`),
and records the partition's decided position (the next command offset) on
``handoff.progress`` (the public path also commits it as the group's offset, in the transaction).
Only after the transaction commits are the decided state and views written to the local store, the
engine told with `apply_committed` (see `handoff.engine.engine`), and the decided position handed to
the trimmer, which deletes the command records below it (`streams.trimming`). A command that appends
several events (`AppendContextBatch`) puts all of them in that one transaction, each with the
command's headers; its reply carries the last, as does the reply a new owner rebuilds from the events.

Why this cannot fork a session's hash chain: partition p's events are only ever appended under the
transactional id of partition p, and a new owner's `init_transactions` fences every earlier
producer of that id and aborts its open transaction before the new owner reads the events to their
end and decides anything. So every decision is taken on a state that includes every committed
event of its session, and a decision whose transaction did not commit left no event behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka.structs import TopicPartition

from handoff.engine.batch import Batch
from handoff.engine.timings import Stopwatch
from handoff.kernel.codec import encode_envelope
from handoff.kernel.commands import Command
from handoff.kernel.errors import HandoffError, InvalidArgument, Unavailable
from handoff.kernel.events import Envelope
from handoff.kernel.receipt import command_digest
from handoff.ports import Outcome
from streams.metrics import WorkerMetrics
from streams.partition import DECIDED_KEY, HEADER_COMMAND_ID, HEADER_DIGEST, OFFSET_KEY, PartitionStore, dedupe_entry
from streams.records import CommandRecord, Reply, decode_command, encode_reply, error_body, seal_reply
from streams.topics import Topics
from streams.transactions import Transaction, transactional_writer
from streams.trimming import CommandTrimmer

log = logging.getLogger(__name__)

# Past its decideBy, a command's submitter has answered UNAVAILABLE: deciding it now would break that promise.
_TOO_LATE = "the command reached a worker after its decideBy deadline; nothing was written; retry"


@dataclass(frozen=True)
class Incoming:
    """A consumed command record, and its ``decideBy`` header (epoch ms) if it has one."""

    offset: int
    value: bytes
    decide_by: int | None = None


@dataclass
class _Plan:
    """What one batch will send, and the command whose reply waits for an event offset."""

    # (replyTo, commandId, reply or None for "as the id's first reply", the record's replyKey or None)
    replies: list[tuple[str, str, Reply | None, str | None]] = field(default_factory=list)
    events: list[tuple[str, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    dead: list[tuple[bytes, str, int]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # per command record: see `streams.metrics.OUTCOMES`
    refusals: Counter[str] = field(default_factory=Counter)  # refused commands by error code


def _loose_ids(value: bytes) -> tuple[str | None, str | None]:
    """The commandId and replyTo of a record that failed typed decoding, if it is JSON at all."""
    try:
        raw = msgspec.json.decode(value)
    except msgspec.DecodeError:
        return None, None
    if not isinstance(raw, dict):
        return None, None
    cid, reply_to = raw.get("commandId"), raw.get("replyTo")
    return (cid if isinstance(cid, str) else None), (reply_to if isinstance(reply_to, str) else None)


class Decider:
    """Decides the command records of one partition it owns."""

    def __init__(
        self,
        store: PartitionStore,
        producer: Any,
        topics: Topics,
        metrics: WorkerMetrics | None = None,
        *,
        accel: bool = True,
        trimmer: CommandTrimmer | None = None,
    ) -> None:
        """`accel=False` (``HANDOFF_KAFKA_ACCEL=0``): transactions through aiokafka's public API only.

        `trimmer` is told each committed decided position, so the decided command records can go.
        """
        self.store = store
        self.trimmer = trimmer
        self.producer = producer
        self.writer = transactional_writer(producer, accel=accel)
        self.topics = topics
        self.metrics = metrics
        self.partition = store.partition
        self.lock = asyncio.Lock()
        self._sync_seconds = metrics.store.sync.observe if metrics is not None else _drop
        self._write_seconds = metrics.store.write.observe if metrics is not None else _drop

    async def process(self, records: list[Incoming]) -> None:
        """Decide a batch and commit its effects atomically; a Kafka error propagates (the worker recovers)."""
        started = time.perf_counter()
        plan = _Plan()
        try:
            batch = self._decide(records, plan)
        except HandoffError:
            raise
        except Exception:  # the per-message guard: isolate the record that breaks deciding
            if len(records) > 1:
                for record in records:
                    await self.process([record])
                return
            log.exception("deciding a command failed; dead-lettering it", extra={"partition": self.partition})
            plan, batch = _Plan(), None
            plan.dead.append((records[0].value, "the command could not be decided (internal error)", records[0].offset))
            plan.outcomes["refused"] += 1
            plan.refusals["INTERNAL"] += 1
        await self._commit(records[-1].offset, plan, batch)
        if self.metrics is not None:
            self.metrics.committed(
                plan.outcomes, plan.refusals, events=len(plan.events), dead=len(plan.dead), records=len(records),
                seconds=time.perf_counter() - started,
            )  # fmt: skip

    def _decide(self, records: list[Incoming], plan: _Plan) -> Batch | None:
        to_decide: list[CommandRecord] = []
        seen: set[str] = set()
        now_ms = time.time() * 1000
        for rec in records:
            cmd = self._admit(rec, plan)
            if cmd is None:
                continue
            cid, reply_to = cmd.command_id, cmd.reply_to or ""
            stored = self.store.stored_reply(cid)
            if stored is not None:
                plan.replies.append((reply_to, cid, stored, cmd.reply_key))
                plan.outcomes["duplicate"] += 1
            elif cid in seen:
                plan.replies.append((reply_to, cid, None, cmd.reply_key))
                plan.outcomes["duplicate"] += 1
            elif rec.decide_by is not None and now_ms > rec.decide_by:  # its submitter has stopped waiting
                self._refuse(cmd, Unavailable(_TOO_LATE), plan, rec)
            else:
                seen.add(cid)
                to_decide.append(cmd)
        if not to_decide:
            return None
        results, batch = self.store.engine.decide_batch([c.command for c in to_decide])
        for cmd, result in zip(to_decide, results, strict=True):
            self._plan_result(cmd, result, plan, batch.records)
        return batch

    def _refuse(self, cmd: CommandRecord, err: HandoffError, plan: _Plan, rec: Incoming | None = None) -> None:
        """Answer a refused command's submitter, or dead-letter it when nobody waits (fire-and-forget).

        The dead letter is the record as consumed when `rec` is at hand, else the command encoded again.
        """
        plan.outcomes["refused"] += 1
        plan.refusals[err.code] += 1
        if cmd.reply_to is not None:
            reply = Reply(command_id=cmd.command_id, ok=False, error=error_body(err))
            plan.replies.append((cmd.reply_to, cmd.command_id, reply, cmd.reply_key))
        else:
            value, offset = (rec.value, rec.offset) if rec is not None else (encode_command_value(cmd), -1)
            plan.dead.append((value, f"{err.code}: {err.message}", offset))

    def _admit(self, rec: Incoming, plan: _Plan) -> CommandRecord | None:
        try:
            cmd = decode_command(rec.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            cid, reply_to = _loose_ids(rec.value)
            reason = f"undecodable command record: {exc}"
            plan.dead.append((rec.value, reason, rec.offset))
            plan.outcomes["invalid"] += 1
            if cid is not None and reply_to is not None:
                err = error_body(InvalidArgument(reason))
                plan.replies.append((reply_to, cid, Reply(command_id=cid, ok=False, error=err), None))
            return None
        if self.topics.partition_for(cmd.command.session_key) != self.partition:
            reason = "the record's key must be its command's sessionKey (it landed on the wrong partition)"
            plan.dead.append((rec.value, reason, rec.offset))
            plan.outcomes["invalid"] += 1
            if cmd.reply_to is not None:
                err = error_body(InvalidArgument(reason, field="sessionKey"))
                reply = Reply(command_id=cmd.command_id, ok=False, error=err)
                plan.replies.append((cmd.reply_to, cmd.command_id, reply, cmd.reply_key))
            return None
        return cmd

    def _plan_result(
        self, cmd: CommandRecord, result: Outcome | HandoffError, plan: _Plan, pending: dict[tuple[str, int], bytes]
    ) -> None:
        if isinstance(result, HandoffError):
            self._refuse(cmd, result, plan)
            return
        if result.replayed:
            key = (cmd.command.session_key, result.envelope.version)
            record = pending.get(key) or self.store.engine.log.record(*key)
            raw = msgspec.Raw(encode_envelope(result.envelope)) if record is not None else msgspec.Raw()  # revealed
            reply = Reply(command_id=cmd.command_id, ok=True, event=raw, receipt=result.receipt, replayed=True)
            plan.replies.append((cmd.reply_to or "", cmd.command_id, reply, cmd.reply_key))
            plan.outcomes["replayed"] += 1
            return
        event = (cmd.command_id, _event_key(result.envelope.session_key), _headers(cmd))
        plan.events.extend([event] * result.events)  # AppendContextBatch: one record per entry, same transaction
        plan.outcomes["appended"] += 1
        reply = Reply(command_id=cmd.command_id, ok=True, receipt=result.receipt)
        plan.replies.append((cmd.reply_to or "", cmd.command_id, reply, cmd.reply_key))

    async def _commit(self, last_offset: int, plan: _Plan, batch: Batch | None) -> None:
        envelopes = list(batch.envelopes) if batch is not None else []
        records = [batch.records[(e.session_key, e.version)] for e in envelopes] if batch is not None else []
        topics, p = self.topics, self.partition
        # Replies carry events in the clear (the log holds their erasable fields encrypted); a batch's last
        by_command = {cid: rec for (cid, _, _), rec in zip(plan.events, _shown(envelopes, records), strict=True)}
        stored: list[tuple[bytes, bytes | None]] = []
        txn = self.writer.begin()
        for (_, key, headers), rec in zip(plan.events, records, strict=True):
            txn.append(topics.events, p, key, rec, headers)
        if batch is not None:
            self._append_keys(txn, batch)
        for reply_to, reply, reply_key in self._final_replies(plan, by_command):
            if reply.command_id in by_command and reply.ok and not reply.replayed:
                stored.append(dedupe_entry(reply))
            if reply_to:  # partition p of the replies: one transactional writer each (see `Topics`)
                body = encode_reply(reply if reply_key is None else seal_reply(reply, reply_key))
                txn.append(topics.replies, p, reply_to.encode(), body)
        for value, reason, offset in plan.dead:
            headers = [("reason", reason.encode()[:4096]), ("partition", b"%d" % p), ("offset", b"%d" % offset)]
            txn.append(topics.deadletter, 0, None, value, headers)
        # The decided position is a record of the same transaction (not a consumer-group offset commit,
        # which would add AddOffsetsToTxn and TxnOffsetCommit round trips to every batch).
        txn.append(topics.progress, p, b"%d" % p, b"%d" % (last_offset + 1))
        txn.consumed(topics.group, TopicPartition(topics.commands, p), last_offset + 1)
        with Stopwatch(self._sync_seconds):
            last = await txn.commit()
        # Committed: the store follows. Its decided-commands mark is what read-your-writes waits on.
        writes: list[tuple[bytes, bytes | None]] = [(DECIDED_KEY, b"%d" % last_offset)]
        if batch is not None and envelopes:
            last_event = last[TopicPartition(topics.events, p)]
            writes = [*batch.writes, *dict(stored).items(), (OFFSET_KEY, b"%d" % last_event), *writes]
        with Stopwatch(self._write_seconds):
            self.store.kv.write(writes)
        if batch is not None and envelopes:
            self._applied(batch)
        if self.trimmer is not None:  # only now: the records below it are decided for good
            self.trimmer.decided(p, last_offset + 1, erased=batch is not None and bool(batch.erased))

    def _applied(self, batch: Batch) -> None:
        """Tell the engine a batch's writes are in the store; purge the files if it erased a session."""
        self.store.engine.apply_committed(batch)
        if batch.erased:  # no file of the store may still hold the key or the content
            self.store.engine.purge_files()
        if self.metrics is not None:
            self.metrics.business.record(batch.envelopes, batch.changes.handoffs, self.partition)

    def _append_keys(self, txn: Transaction, batch: Batch) -> None:
        """Data keys: kept with their session's registration, forgotten with its erasure (docs/erasure.md)."""
        for session, cipher in batch.ciphers.items():
            txn.append(self.topics.keys, self.partition, session.encode(), cipher.key)
        for session in batch.erased:
            txn.append(self.topics.keys, self.partition, session.encode(), None)  # a tombstone

    def _final_replies(self, plan: _Plan, by_command: dict[str, bytes]) -> list[tuple[str, Reply, str | None]]:
        """Replies with their event filled in; a duplicate within the batch gets its first's reply.

        Each goes with the replyKey of its own record: a duplicate from another submitter is sealed for it.
        """
        first: dict[str, Reply] = {}
        out: list[tuple[str, Reply, str | None]] = []
        for reply_to, cid, reply, reply_key in plan.replies:
            if reply is None:
                reply = first.get(cid)
                if reply is None:
                    continue
            elif cid in by_command and reply.ok and not reply.event:
                reply = msgspec.structs.replace(reply, event=msgspec.Raw(by_command[cid]), partition=self.partition)
            first.setdefault(cid, reply)
            out.append((reply_to, reply, reply_key))
        return out


def _shown(envelopes: list[Envelope], records: list[bytes]) -> list[bytes]:
    """The records with their erasable fields in the clear (the envelopes are shown: ``encrypted == b""``)."""
    return [
        encode_envelope(e) if getattr(e.event, "encrypted", None) == b"" else rec
        for e, rec in zip(envelopes, records, strict=True)
    ]


def _drop(_seconds: float) -> None:
    return None


def _event_key(session_key: str) -> bytes:
    return session_key.encode()


def _headers(cmd: CommandRecord) -> list[tuple[str, bytes]]:
    headers = [(HEADER_COMMAND_ID, cmd.command_id.encode())]
    if cmd.command.idempotency_key is not None:
        headers.append((HEADER_DIGEST, command_digest(cmd.command).encode()))
    return headers


def encode_command_value(cmd: CommandRecord) -> bytes:
    """A decoded command record, encoded again (for the dead letter of a refused fire-and-forget command)."""
    return msgspec.json.encode(cmd)


__all__ = ["Command", "Decider", "Incoming"]
