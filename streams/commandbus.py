"""`KafkaCommandBus`: the CommandBus port over Kafka: a command record out, its decision back.

A command record goes to ``handoff.commands`` (idempotent producer, acks=all) and the call waits for
its reply on ``handoff.replies``; when no decision comes in time → `Unavailable`. Each record carries
a fresh reply key, which only this call keeps: the worker seals the reply under it, so the replies
topic holds no content that outlives the command record (`streams.records`, `streams.trimming`). The offsets of the
records it had accepted (`written`, per partition) go with every read, so that reads see this
adapter's own writes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import time
import uuid
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.structs import TopicPartition

from handoff.kernel.codec import decode_envelope
from handoff.kernel.commands import Command
from handoff.kernel.errors import Unavailable
from handoff.ports import Outcome
from streams.directory import WorkerDirectory
from streams.records import (
    CommandRecord,
    ErrorBody,
    Reply,
    decide_by_header,
    decode_reply,
    encode_command,
    error_of,
    new_reply_key,
    open_reply,
)
from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import LONG_POLL_MS, Topics

log = logging.getLogger(__name__)


def _fail_with(reply: asyncio.Future[Reply], delivery: asyncio.Future[Any]) -> None:
    """A command record that could not be delivered fails the wait for its decision."""
    if not delivery.cancelled() and delivery.exception() is not None and not reply.done():
        reply.set_exception(delivery.exception())  # type: ignore[arg-type]


class KafkaCommandBus:
    """Sends commands to their session's partition and matches the replies to the waiting calls."""

    def __init__(
        self, bootstrap: str, topics: Topics, directory: WorkerDirectory, *, timeout: float,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.security = security
        self.topics = topics
        self.directory = directory  # only to say why a decision did not come
        self.timeout = timeout
        # Commands carry a decideBy this long before the wait ends: time for the commit and the reply to
        # come back, so that a call answered UNAVAILABLE never takes effect later (see `streams.records`).
        self.decide_margin = min(2.0, timeout / 4)
        self.adapter_id = f"a-{uuid.uuid4().hex[:12]}"
        self.written: dict[int, int] = {}  # partition -> newest accepted command record of this adapter
        self._producer: Any = None
        self._replies: Any = None
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._deadlines: collections.deque[tuple[float, str]] = collections.deque()  # in order: one timeout for all
        self._id_prefix = f"{uuid.uuid4().hex}-"  # command ids: unique per adapter, then a counter
        self._ids = itertools.count()
        self._producer_lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """Whether the producer has been started."""
        return self._producer is not None

    async def brokers(self) -> int:
        """Brokers in a fresh metadata answer from Kafka (raises if Kafka cannot be reached)."""
        if self._producer is None:
            raise Unavailable("the Kafka producer is not started")
        cluster = await self._producer.client.fetch_all_metadata()
        return len(cluster.brokers())

    async def start(self) -> None:
        """Connect, and position the replies consumer at the end before any command is sent."""
        self._producer = await self._new_producer()
        self._replies = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, isolation_level="read_committed",
            enable_auto_commit=False, fetch_max_wait_ms=LONG_POLL_MS, **self.security.client_kwargs(),
        )  # fmt: skip
        await self._replies.start()
        parts = [TopicPartition(self.topics.replies, p) for p in range(self.topics.partitions)]
        self._replies.assign(parts)
        await self._replies.seek_to_end(*parts)
        for tp in parts:  # resolve the end now, before any command is sent
            await self._replies.position(tp)

    async def stop(self) -> None:
        """Disconnect."""
        for client in (self._producer, self._replies):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    async def _new_producer(self) -> Any:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all", linger_ms=1,
            request_timeout_ms=int(self.timeout * 1000), max_request_size=8 << 20, max_batch_size=1 << 20,
            **self.security.client_kwargs(),
        )  # fmt: skip
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer

    async def _replace_producer(self, broken: Any) -> None:
        """An idempotent producer that hit a fatal error (e.g. after a broker restart) is replaced."""
        async with self._producer_lock:
            if self._producer is not broken:
                return
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broken.stop(), 5)
            self._producer = await self._new_producer()

    async def follow_replies(self) -> None:
        """Hand each reply addressed to this adapter to the call waiting for it (runs until cancelled)."""
        mine = self.adapter_id.encode()
        while True:
            data = await self._replies.getmany(timeout_ms=200)
            for messages in data.values():
                for m in messages:
                    if m.key != mine:
                        continue
                    try:
                        reply = decode_reply(m.value)
                    except msgspec.DecodeError:
                        log.exception("undecodable reply")
                        continue
                    future = self._pending.get(reply.command_id)
                    if future is not None and not future.done():
                        future.set_result(reply)

    async def expire(self) -> None:
        """Fail the commands whose decision has not come within `timeout` (one timer for all of them)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.05)
            now, deadlines = loop.time(), self._deadlines
            while deadlines and deadlines[0][0] <= now:
                future = self._pending.get(deadlines.popleft()[1])
                if future is not None and not future.done():
                    future.set_exception(TimeoutError())

    async def submit(self, command: Command) -> Outcome:
        """Send the command and wait for its decision; Unavailable if none comes in time."""
        command_id = f"{self._id_prefix}{next(self._ids):x}"
        reply_key, key = new_reply_key()  # the reply is sealed under it: readable while the record is kept
        record = encode_command(
            CommandRecord(command_id=command_id, command=command, reply_to=self.adapter_id, reply_key=reply_key)
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._pending[command_id] = future
        self._deadlines.append((loop.time() + self.timeout, command_id))  # `expire` fails it then, if still pending
        producer = self._producer
        try:
            # Sending is bounded by the producer's request timeout (the same `timeout`); the decision by `expire`.
            delivery = await producer.send(
                self.topics.commands, record, key=command.session_key.encode(),
                partition=self.topics.partition_for(command.session_key),
                headers=[decide_by_header(time.time() + self.timeout - self.decide_margin)],
            )  # fmt: skip
            delivery.add_done_callback(functools.partial(_fail_with, future))
            reply = await future
            sent = await delivery  # done: the reply follows the record's acknowledgement (or it failed the reply)
        except KafkaTimeoutError as exc:  # the record was not acknowledged in time: as a late decision
            raise Unavailable(f"no decision from the Kafka workers in time ({type(exc).__name__}); retry") from exc
        except KafkaError as exc:
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                await asyncio.wait_for(self._replace_producer(producer), self.timeout)
            raise Unavailable(f"Kafka refused the command ({type(exc).__name__}); retry") from exc
        except TimeoutError as exc:
            raise Unavailable(self._no_decision(command)) from exc
        finally:
            self._pending.pop(command_id, None)
        try:
            reply = open_reply(reply, key)
        except ValueError as exc:  # not the worker's reply to this record: as no decision
            raise Unavailable(f"{exc}; retry") from exc
        return self._outcome(reply, sent.partition, sent.offset)

    def _no_decision(self, command: Command) -> str:
        """Why a command got no decision in time, as far as this adapter can tell."""
        directory = self.directory
        if not directory.urls:  # the usual first mistake: serve --kafka started, no worker
            return (
                f"no decision from the Kafka workers in time: no worker has announced itself on {self.topics.workers} "
                f"(start one: handoff worker --kafka {self.bootstrap}); retry"
            )
        p = self.topics.partition_for(command.session_key)
        checked = directory.checked_at > 0  # the owners were asked at least once since the last announcement
        unowned = checked and p not in directory.owners
        owner = f"; no ready worker owned partition {p} at the last check" if unowned else ""
        return f"no decision from the Kafka workers in time{owner}; retry"

    def _outcome(self, reply: Reply, partition: int, offset: int) -> Outcome:
        if not reply.ok:
            raise error_of(reply.error or ErrorBody(code="INTERNAL", message="refused"))
        assert reply.event and reply.receipt is not None
        if offset > self.written.get(partition, -1):  # reads wait until the owner has decided this record
            self.written[partition] = offset
        return Outcome(decode_envelope(bytes(reply.event)), reply.receipt, replayed=reply.replayed)

    def in_flight(self) -> float:
        """Commands sent whose decision has not come back yet (a gauge)."""
        return float(len(self._pending))
