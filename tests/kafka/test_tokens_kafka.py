"""The Kafka token store: what one process issues or revokes, every adapter following the topic sees in time."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from handoff.kernel.principal import Principal
from handoff.tokens import TokenError
from kafka.support import Broker, wait_until
from streams.tokens import KafkaTokenStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def prefix() -> str:
    return f"tok{uuid.uuid4().hex[:8]}"


async def test_an_issued_token_is_seen_by_another_adapter_and_its_revocation_within_5_seconds(
    broker: Broker, prefix: str
) -> None:
    async with KafkaTokenStore(broker.bootstrap, prefix) as cli, KafkaTokenStore(broker.bootstrap, prefix) as adapter:
        record, token = await cli.create("alice", "agent", None)

        async def seen() -> bool:
            return adapter.principal(token) is not None

        await wait_until(seen, 5.0, "the adapter to see the new token")
        assert adapter.principal(token) == (Principal(agent="alice"), record)
        await cli.revoke(record.id)
        revoked_at = time.monotonic()

        async def gone() -> bool:
            return adapter.principal(token) is None

        await wait_until(gone, 5.0, "the adapter to see the revocation")
        assert time.monotonic() - revoked_at < 5.0


async def test_a_store_started_later_reads_every_token_from_the_topic(broker: Broker, prefix: str) -> None:
    async with KafkaTokenStore(broker.bootstrap, prefix) as cli:
        live, token = await cli.create("bob", "auditor", timedelta(hours=1))
        gone, old = await cli.create("carol", "agent", None)
        await cli.revoke(gone.id)
    async with KafkaTokenStore(broker.bootstrap, prefix) as later:
        assert later.principal(token) == (Principal(agent="bob", role="auditor"), live)
        assert later.principal(old) is None
        assert {r.id: r.revoked_at is not None for r in later.records()} == {live.id: False, gone.id: True}
        assert token not in str(later.records())
        with pytest.raises(TokenError):
            await later.revoke("tok_unknown")
