"""Bearer tokens in Kafka mode: the compacted ``<prefix>.tokens`` topic, followed by every adapter.

Each record is a `TokenRecord` (JSON) keyed by its token id; a revocation is the same id again with
``revokedAt`` set, so compaction keeps exactly the newest state of every token. An adapter reads the
topic from the start when it starts and then follows it: a revocation reaches every running adapter
as soon as its long poll returns (well under the contract's 5 s). `handoff token --kafka` writes here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from handoff.kernel.principal import Principal, Role
from handoff.tokens import TokenError, TokenIndex, TokenRecord, issue, revoked
from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import LONG_POLL_MS

log = logging.getLogger(__name__)

_decode = msgspec.json.Decoder(TokenRecord)


def tokens_topic(prefix: str) -> str:
    """The token topic of an installation."""
    return f"{prefix}.tokens"


def _now() -> datetime:
    return datetime.now(UTC)


class KafkaTokenStore:
    """The tokens of a Kafka installation: an index kept current from the topic, and the writes to it."""

    def __init__(
        self, bootstrap: str, prefix: str, *, clock: Callable[[], datetime] = _now, security: KafkaSecurity = PLAINTEXT
    ) -> None:
        self.bootstrap, self.topic, self.clock = bootstrap, tokens_topic(prefix), clock
        self.security = security
        self.index = TokenIndex()
        self._partition = TopicPartition(self.topic, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._follower: asyncio.Task[None] | None = None
        self._position = 0

    async def __aenter__(self) -> KafkaTokenStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Create the topic if needed, read it to its end, then follow it in the background."""
        await _ensure_topic(self.bootstrap, self.topic, self.security)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=LONG_POLL_MS,
            **self.security.client_kwargs(),
        )
        await self._consumer.start()
        self._consumer.assign([self._partition])
        await self._consumer.seek_to_beginning(self._partition)
        await self.catch_up()
        self._follower = asyncio.create_task(self._follow(), name="handoff-tokens")

    async def stop(self) -> None:
        """Stop following the topic."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self._consumer is not None:
            await self._consumer.stop()

    async def catch_up(self) -> None:
        """Apply every record up to the topic's current end."""
        assert self._consumer is not None
        end = (await self._consumer.end_offsets([self._partition]))[self._partition]
        while self._position < end:
            await self._apply(await self._consumer.getmany(self._partition, timeout_ms=1000))

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                await self._apply(await self._consumer.getmany(self._partition, timeout_ms=LONG_POLL_MS))
            except KafkaError as exc:  # the broker is away: keep the last known tokens, and retry
                log.warning("cannot read the token topic", extra={"error": str(exc)})
                await asyncio.sleep(1)

    async def _apply(self, batches: dict[TopicPartition, list[object]]) -> None:
        for records in batches.values():
            for record in records:
                self._position = record.offset + 1  # type: ignore[attr-defined]
                value = record.value  # type: ignore[attr-defined]
                if value is None:
                    continue
                try:
                    self.index.apply(_decode.decode(value))
                except msgspec.DecodeError:
                    log.error("a token record could not be decoded", extra={"offset": self._position - 1})

    def principal(self, token: str) -> tuple[Principal, TokenRecord] | None:
        """The principal of a live token, as this adapter last read the topic."""
        return self.index.principal(token, self.clock())

    def records(self) -> list[TokenRecord]:
        """Every token issued, revoked and expired ones included."""
        return list(self.index.by_id.values())

    async def _publish(self, record: TokenRecord) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, **self.security.client_kwargs()
        )
        await producer.start()
        try:
            await producer.send_and_wait(self.topic, msgspec.json.encode(record), key=record.id.encode(), partition=0)
        finally:
            await producer.stop()
        await self.catch_up()

    async def create(self, agent: str, role: Role, ttl: timedelta | None) -> tuple[TokenRecord, str]:
        """Issue a token: its record goes to the topic, the token only to the caller."""
        record, token = issue(agent, role, ttl, self.clock())
        await self._publish(record)
        return record, token

    async def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token by id (TokenError if unknown)."""
        await self.catch_up()
        record = self.index.by_id.get(token_id)
        if record is None:
            raise TokenError(f"no token has the id {token_id!r}")
        if record.revoked_at is None:
            record = revoked(record, self.clock())
            await self._publish(record)
        return record


async def _ensure_topic(bootstrap: str, topic: str, security: KafkaSecurity) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **security.client_kwargs())
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            spec = NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([spec])
        for _ in range(100):  # a new topic's leader is named a moment after it is created
            (described,) = await admin.describe_topics([topic])
            if described["error_code"] == 0 and described["partitions"] and described["partitions"][0]["leader"] >= 0:
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
