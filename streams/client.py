"""`KafkaService`: the adapter side of Kafka mode, implementing CommandBus, ReadModel and ChangeFeed.

Writes: a command record goes to ``handoff.commands`` (idempotent producer, acks=all) and the call
waits for its reply on ``handoff.replies``. Reads: session reads go to the worker that owns the
session's partition, lists and handoff lookups go to every worker and are merged by index key.
Workers are found from the compacted ``handoff.workers`` topic. Every read carries the offsets of
the command records this adapter had accepted (per partition), and workers answer only once their
stores have decided them: read-your-writes. When Kafka or the workers cannot be reached in time → `Unavailable`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import json
import logging
import time
import uuid
from typing import Any

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.structs import TopicPartition

from handoff.kernel.codec import decode_envelope
from handoff.kernel.commands import Command
from handoff.kernel.errors import HandoffError, Unavailable
from handoff.kernel.events import HandoffRequested
from handoff.kernel.package import PackageEntry
from handoff.ports import Change, ChangeListener, Outcome
from projections.folds import affected_handoffs
from projections.queries import Page, encode_cursor
from projections.views import ContextEntryView, HandoffView, SessionView, SummaryView
from streams.records import (
    CommandRecord,
    ErrorBody,
    Reply,
    decide_by_header,
    decode_reply,
    encode_command,
    error_of,
)
from streams.topics import LONG_POLL_MS, Topics, ensure_topics

log = logging.getLogger(__name__)

_enc = msgspec.msgpack.Encoder()
_dec_session = msgspec.msgpack.Decoder(SessionView | None)
_dec_summary = msgspec.msgpack.Decoder(SummaryView | None)
_dec_handoff = msgspec.msgpack.Decoder(HandoffView | None)
_dec_context = msgspec.msgpack.Decoder(tuple[list[ContextEntryView], int | None])
_dec_entries = msgspec.msgpack.Decoder(list[PackageEntry])


def _fail_with(reply: asyncio.Future[Reply], delivery: asyncio.Future[Any]) -> None:
    """A command record that could not be delivered fails the wait for its decision."""
    if not delivery.cancelled() and delivery.exception() is not None and not reply.done():
        reply.set_exception(delivery.exception())  # type: ignore[arg-type]


class _Retry(Exception):
    """A worker could not answer now (not the owner, lagging, unreachable): refresh and try again."""


class KafkaService:
    """The ports over Kafka and the workers' query endpoints."""

    def __init__(
        self, bootstrap: str, *, topics: Topics | None = None, timeout: float = 10.0, kafka_accel: bool = True
    ) -> None:
        self.bootstrap = bootstrap
        self.kafka_accel = kafka_accel  # False: HANDOFF_KAFKA_ACCEL=0 (see handoff.accel)
        self.topics = topics or Topics()
        self.timeout = timeout
        # Commands carry a decideBy this long before the wait ends: time for the commit and the reply to
        # come back, so that a call answered UNAVAILABLE never takes effect later (see `streams.records`).
        self.decide_margin = min(2.0, timeout / 4)
        self.adapter_id = f"a-{uuid.uuid4().hex[:12]}"
        self._producer: Any = None
        self._replies: Any = None
        self._workers_consumer: Any = None
        self._events: Any = None
        self._http: aiohttp.ClientSession | None = None
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._deadlines: collections.deque[tuple[float, str]] = collections.deque()  # in order: one timeout for all
        self._id_prefix = f"{uuid.uuid4().hex}-"  # command ids: unique per adapter, then a counter
        self._ids = itertools.count()
        self._written: dict[int, int] = {}  # partition -> newest accepted command record of this adapter
        self._urls: dict[str, str] = {}  # workerId -> url, from handoff.workers
        self._owners: dict[int, str] = {}  # partition -> url, from the workers' /health
        self._owners_at = 0.0
        self._listeners: list[ChangeListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._producer_lock = asyncio.Lock()

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create topics if needed, connect, and start following replies and worker announcements."""
        await ensure_topics(self.bootstrap, self.topics, accel=self.kafka_accel)
        self._producer = await self._new_producer()
        self._replies = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, isolation_level="read_committed",
            enable_auto_commit=False, fetch_max_wait_ms=LONG_POLL_MS,
        )  # fmt: skip
        await self._replies.start()
        parts = [TopicPartition(self.topics.replies, p) for p in range(self.topics.partitions)]
        self._replies.assign(parts)
        await self._replies.seek_to_end(*parts)
        for tp in parts:  # resolve the end now, before any command is sent
            await self._replies.position(tp)
        self._workers_consumer = AIOKafkaConsumer(
            self.topics.workers, bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False, fetch_max_wait_ms=LONG_POLL_MS,
        )  # fmt: skip
        await self._workers_consumer.start()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._tasks = [
            asyncio.create_task(self._follow_replies(), name="handoff-replies"),
            asyncio.create_task(self._follow_workers(), name="handoff-workers"),
            asyncio.create_task(self._expire(), name="handoff-deadlines"),
        ]

    async def _new_producer(self) -> Any:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all", linger_ms=1,
            request_timeout_ms=int(self.timeout * 1000), max_request_size=8 << 20, max_batch_size=1 << 20,
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

    async def stop(self) -> None:
        """Disconnect."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in (self._producer, self._replies, self._workers_consumer, self._events):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        if self._http is not None:
            await self._http.close()

    async def _follow_replies(self) -> None:
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

    async def _expire(self) -> None:
        """Fail the commands whose decision has not come within `timeout` (one timer for all of them)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.05)
            now, deadlines = loop.time(), self._deadlines
            while deadlines and deadlines[0][0] <= now:
                future = self._pending.get(deadlines.popleft()[1])
                if future is not None and not future.done():
                    future.set_exception(TimeoutError())

    async def _follow_workers(self) -> None:
        while True:
            data = await self._workers_consumer.getmany(timeout_ms=500)
            for messages in data.values():
                for m in messages:
                    wid = m.key.decode()
                    if m.value is None:
                        self._urls.pop(wid, None)
                    else:
                        self._urls[wid] = json.loads(m.value)["url"]
                    self._owners_at = 0.0

    # -- CommandBus ---------------------------------------------------------------------------------

    async def submit(self, command: Command) -> Outcome:
        """Send the command and wait for its decision; Unavailable if none comes in time."""
        command_id = f"{self._id_prefix}{next(self._ids):x}"
        record = encode_command(CommandRecord(command_id=command_id, command=command, reply_to=self.adapter_id))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._pending[command_id] = future
        self._deadlines.append((loop.time() + self.timeout, command_id))  # `_expire` fails it then, if still pending
        producer = self._producer
        try:
            # Sending is bounded by the producer's request timeout (the same `timeout`); the decision by `_expire`.
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
        return self._outcome(reply, sent.partition, sent.offset)

    def _no_decision(self, command: Command) -> str:
        """Why a command got no decision in time, as far as this adapter can tell."""
        if not self._urls:  # the usual first mistake: serve --kafka started, no worker
            return (
                f"no decision from the Kafka workers in time: no worker has announced itself on {self.topics.workers} "
                f"(start one: handoff worker --kafka {self.bootstrap}); retry"
            )
        p = self.topics.partition_for(command.session_key)
        checked = self._owners_at > 0  # the owners were asked at least once since the last announcement
        owner = "" if p in self._owners or not checked else f"; no ready worker owned partition {p} at the last check"
        return f"no decision from the Kafka workers in time{owner}; retry"

    def _outcome(self, reply: Reply, partition: int, offset: int) -> Outcome:
        if not reply.ok:
            raise error_of(reply.error or ErrorBody(code="INTERNAL", message="refused"))
        assert reply.event and reply.receipt is not None
        if offset > self._written.get(partition, -1):  # reads wait until the owner has decided this record
            self._written[partition] = offset
        return Outcome(decode_envelope(bytes(reply.event)), reply.receipt, replayed=reply.replayed)

    # -- routing ------------------------------------------------------------------------------------

    async def _refresh_owners(self) -> None:
        assert self._http is not None
        owners: dict[int, str] = {}
        for url in list(self._urls.values()):
            try:
                async with self._http.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    body = await resp.json()
            except (aiohttp.ClientError, TimeoutError):
                continue
            for p in body["partitions"]:
                owners[int(p)] = url
        self._owners, self._owners_at = owners, time.monotonic()

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        body["wait"] = {str(p): o for p, o in self._written.items()}
        try:
            async with self._http.post(f"{url}/q", data=_enc.encode(body)) as resp:
                raw = await resp.read()
                if resp.status in (421, 503):
                    raise _Retry(resp.status)
                resp.raise_for_status()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(str(exc)) from exc
        answer: dict[str, Any] = msgspec.msgpack.decode(raw)
        if "error" in answer:
            raise error_of(msgspec.convert(answer["error"], ErrorBody))
        return answer

    async def _with_retry(self, attempt: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            if time.monotonic() - self._owners_at > 2.0:
                await self._refresh_owners()
            try:
                return await attempt()
            except _Retry as exc:
                if time.monotonic() > deadline:
                    raise Unavailable(f"the Kafka workers could not answer in time ({exc}); retry") from exc
                self._owners_at = 0.0
                await asyncio.sleep(0.05)

    async def _session_read(self, body: dict[str, Any]) -> Any:
        async def attempt() -> Any:
            url = self._owners.get(self.topics.partition_for(body["key"]))
            if url is None:
                raise _Retry("no worker owns the partition")
            return (await self._post(url, dict(body)))["ok"]

        return await self._with_retry(attempt)

    async def _everywhere(self, body: dict[str, Any], *, stop_at_hit: bool = False) -> list[Any]:
        """Ask every worker; retry until their partitions cover the whole topic."""

        async def attempt() -> list[Any]:
            urls = set(self._owners.values())
            answers = await asyncio.gather(*(self._post(u, dict(body)) for u in urls), return_exceptions=True)
            covered: set[int] = set()
            results = []
            for answer in answers:
                if isinstance(answer, HandoffError):
                    raise answer
                if isinstance(answer, BaseException):
                    continue
                covered.update(answer["partitions"])
                results.append(answer["ok"])
            if stop_at_hit and any(r is not None for r in results):
                return results
            if covered != set(range(self.topics.partitions)):
                raise _Retry(f"partitions {sorted(set(range(self.topics.partitions)) - covered)} have no ready worker")
            return results

        result: list[Any] = await self._with_retry(attempt)
        return result

    # -- ReadModel ----------------------------------------------------------------------------------

    async def session(self, key: str, as_of: int | None = None) -> SessionView | None:
        """A session view from its owner."""
        raw = await self._session_read({"op": "session", "key": key, "asOf": as_of})
        view: SessionView | None = _dec_session.decode(_enc.encode(raw))
        return view

    async def summary(self, key: str, as_of: int | None = None) -> SummaryView | None:
        """A summary view from its owner."""
        raw = await self._session_read({"op": "summary", "key": key, "asOf": as_of})
        view: SummaryView | None = _dec_summary.decode(_enc.encode(raw))
        return view

    async def context(
        self, key: str, after: int, limit: int, as_of: int | None = None
    ) -> tuple[list[ContextEntryView], int | None]:
        """A page of context entries from the session's owner."""
        raw = await self._session_read({"op": "context", "key": key, "after": after, "limit": limit, "asOf": as_of})
        return _dec_context.decode(_enc.encode(raw))

    async def handoff(self, hid: str) -> HandoffView | None:
        """A handoff view, from whichever worker holds it."""
        for raw in await self._everywhere({"op": "handoff", "hid": hid}, stop_at_hit=True):
            if raw is not None:
                view: HandoffView | None = _dec_handoff.decode(_enc.encode(raw))
                return view
        return None

    async def package_entries(self, view: HandoffView) -> list[PackageEntry]:
        """The recorded package's entries, from the session's owner."""
        body = {"op": "package", "key": view.session_key, "view": _enc.encode(view)}
        return _dec_entries.decode(_enc.encode(await self._session_read(body)))

    async def _merged(self, body: dict[str, Any], limit: int) -> tuple[list[bytes], str | None]:
        pairs: list[list[bytes]] = []
        for found in await self._everywhere(body):
            pairs.extend(found)
        pairs.sort(key=lambda kv: kv[0])
        page = pairs[:limit]
        cursor = encode_cursor(page[-1][0]) if len(pairs) > limit and page else None
        return [v for _, v in page], cursor

    async def list_sessions(
        self, agent: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[SessionView]:
        """Sessions newest first, merged over every worker."""
        body = {"op": "list_sessions", "agent": agent, "status": status, "limit": limit, "cursor": cursor}
        values, nxt = await self._merged(body, limit)
        return Page([msgspec.msgpack.decode(v, type=SessionView) for v in values], nxt)

    async def list_handoffs(
        self, target: str | None, source: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[HandoffView]:
        """Handoffs newest first, merged over every worker."""
        body = {
            "op": "list_handoffs", "target": target, "source": source, "status": status,
            "limit": limit, "cursor": cursor,
        }  # fmt: skip
        values, nxt = await self._merged(body, limit)
        return Page([msgspec.msgpack.decode(v, type=HandoffView) for v in values], nxt)

    def in_flight(self) -> float:
        """Commands sent whose decision has not come back yet (a gauge)."""
        return float(len(self._pending))

    def worker_count(self) -> float:
        """Workers announced on the workers topic (a gauge)."""
        return float(len(self._urls))

    def partitions_served(self) -> float:
        """Partitions that had a ready worker at the last check (a gauge)."""
        return float(len(self._owners))

    async def ready(self) -> bool:
        """Kafka is connected and every partition has a ready worker."""
        if self._producer is None:
            return False
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await self._refresh_owners()
        return set(self._owners) == set(range(self.topics.partitions))

    async def dump_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        """Every view entry of a partition, from its owner (verification and tests)."""

        async def attempt() -> Any:
            url = self._owners.get(partition)
            if url is None:
                raise _Retry("no owner")
            return (await self._post(url, {"op": "dump", "partition": partition}))["ok"]

        return [(bytes(k), bytes(v)) for k, v in await self._with_retry(attempt)]

    # -- ChangeFeed ---------------------------------------------------------------------------------

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener` for every event committed to handoff.events from now on."""
        self._listeners.append(listener)
        if self._events is None:
            self._events = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, isolation_level="read_committed",
                enable_auto_commit=False, fetch_max_wait_ms=LONG_POLL_MS,
            )  # fmt: skip
            self._tasks.append(asyncio.create_task(self._follow_events(), name="handoff-changes"))

    async def _follow_events(self) -> None:
        await self._events.start()
        parts = [TopicPartition(self.topics.events, p) for p in range(self.topics.partitions)]
        self._events.assign(parts)
        await self._events.seek_to_end(*parts)
        while True:
            data = await self._events.getmany(timeout_ms=500)
            for messages in data.values():
                for m in messages:
                    await self._announce(m.value)

    async def _announce(self, value: bytes) -> None:
        env = decode_envelope(value)
        hids = tuple(affected_handoffs(env))
        agents: list[str] = []
        for hid in hids:
            if isinstance(env.event, HandoffRequested):
                pair = (env.event.target_agent, env.event.source_agent)
            else:
                try:
                    view = await self.handoff(hid)
                except HandoffError:
                    view = None
                pair = (view.target_agent, view.source_agent) if view is not None else ()  # type: ignore[assignment]
            agents += [a for a in pair if a not in agents]
        change = Change(env.session_key, env.version, env.type, hids, tuple(agents))
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # a listener must not stop the feed
                log.exception("change listener failed")
