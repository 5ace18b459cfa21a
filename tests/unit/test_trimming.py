"""The command trimmer asks for no deletion past a committed decided position, and a missing ACL is named once;
a reply sealed under its command's key shows nothing but its id and outcome."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from aiokafka.structs import TopicPartition

from handoff.kernel.receipt import Receipt, SessionSnapshot
from streams.records import Reply, decode_reply, encode_reply, new_reply_key, open_reply, seal_reply
from streams.trimming import CommandTrimmer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeAdmin:
    """Answers DeleteRecords as a broker does (the new log start offsets), or raises `error`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.asked: list[dict[TopicPartition, int]] = []

    async def delete_records(self, request: dict[TopicPartition, Any]) -> dict[TopicPartition, int]:
        self.asked.append({tp: r.before_offset for tp, r in request.items()})
        if self.error is not None:
            raise self.error
        return {tp: r.before_offset for tp, r in request.items()}


def _trimmer(admin: FakeAdmin) -> CommandTrimmer:
    return CommandTrimmer("unused:9092", "h.commands", admin=admin)


async def test_the_trimmer_deletes_below_the_newest_committed_position_of_each_partition_and_only_once() -> None:
    admin = FakeAdmin()
    trimmer = _trimmer(admin)
    trimmer.decided(0, 5)
    trimmer.decided(0, 3)  # an older position (a former owner's, late) never lowers what is due
    trimmer.decided(1, 7)
    assert await trimmer.trim() == 2
    assert admin.asked == [{TopicPartition("h.commands", 0): 5, TopicPartition("h.commands", 1): 7}]
    assert await trimmer.trim() == 0  # nothing decided since
    trimmer.decided(1, 9)
    await trimmer.trim()
    assert admin.asked[-1] == {TopicPartition("h.commands", 1): 9}


async def test_a_principal_without_the_delete_acl_gets_one_warning_naming_it_and_the_trimmer_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin = FakeAdmin(TopicAuthorizationFailedError())
    trimmer = _trimmer(admin)
    with caplog.at_level(logging.INFO, logger="handoff.worker"):
        for offset in (1, 2, 3):
            trimmer.decided(0, offset)
            assert await trimmer.trim() == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Delete ACL on topic h.commands" in warnings[0].getMessage()
    assert len(admin.asked) == 3  # still asked each round: a granted ACL takes effect without a restart
    admin.error = None
    assert await trimmer.trim() == 1


async def test_a_broker_away_is_retried_at_the_next_round() -> None:
    admin = FakeAdmin(KafkaConnectionError())
    trimmer = _trimmer(admin)
    trimmer.decided(0, 4)
    assert await trimmer.trim() == 0
    admin.error = None
    assert await trimmer.trim() == 1
    assert admin.asked[-1] == {TopicPartition("h.commands", 0): 4}


def test_a_sealed_reply_shows_only_its_command_id_and_outcome_and_opens_under_its_key() -> None:
    snapshot = SessionSnapshot(session_key="s", agent_from="a", holder="a", status="active", version=1,
                               created_at="t", updated_at="t", metadata={"note": "SECRET"})  # fmt: skip
    reply = Reply(command_id="c1", ok=True, event=msgspec.Raw(b'{"content":"SECRET"}'),
                  receipt=Receipt(fingerprint="f", session=snapshot, version=1))  # fmt: skip
    reply_key, key = new_reply_key()
    wire = encode_reply(seal_reply(reply, reply_key))
    assert b"SECRET" not in wire
    sealed = decode_reply(wire)
    assert (sealed.command_id, sealed.ok, sealed.receipt) == ("c1", True, None)
    assert open_reply(sealed, key) == reply
    with pytest.raises(ValueError, match="does not open"):
        open_reply(sealed, new_reply_key()[1])
