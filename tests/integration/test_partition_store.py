"""A worker's partition store keeps each decided command's reply without its event, and gives it back whole."""

from __future__ import annotations

from pathlib import Path

import msgspec

from handoff.engine.engine import Engine
from handoff.engine.ids import Clock, IdGenerator
from handoff.kernel.commands import AppendContext, AppendContextBatch, ContextItem, RegisterSession
from handoff.kernel.receipt import command_digest
from handoff.kernel.types import Limits
from handoff.storage import due
from handoff.storage.kv import RocksKeyValue
from handoff.storage.log import EventLog
from streams.partition import HEADER_COMMAND_ID, HEADER_DIGEST, EventRecord, PartitionStore, dedupe_key
from streams.records import encode_reply

CONTENT = "the content of this entry, which must be stored once " * 8


def _records(tmp_path: Path) -> list[bytes]:
    """Two events of one session, as the log holds them."""
    kv = RocksKeyValue(str(tmp_path / "source"))
    engine = Engine(kv, sync=False)
    engine.write_now([RegisterSession(session_key="s", agent_from="a")])
    engine.write_now([AppendContext(session_key="s", context_type="message", content=CONTENT)])
    records = [record for _, _, record in EventLog(kv).all_records()]
    kv.close()
    return records


def _store(path: Path) -> PartitionStore:
    return PartitionStore(path, 0, limits=Limits(), clock=Clock(), new_id=IdGenerator())


def test_a_folded_commands_reply_is_stored_without_its_event_and_read_back_with_it(tmp_path: Path) -> None:
    records = _records(tmp_path)
    store = _store(tmp_path / "p0")
    folded = store.catch_up(
        [EventRecord(i, value, {HEADER_COMMAND_ID: f"c{i}"}) for i, value in enumerate(records)]
    )
    assert folded == 2

    stored = store.kv.get(dedupe_key("c1"))
    assert stored is not None
    assert CONTENT.encode() not in stored  # held once, as the event
    reply = store.stored_reply("c1")
    assert reply is not None and reply.ok and reply.command_id == "c1"
    assert bytes(reply.event) == records[1]
    assert reply.receipt is not None and reply.receipt.version == 2
    assert store.stored_reply("unknown") is None
    store.close()


def test_a_reply_stored_whole_by_an_earlier_release_is_read_as_it_is(tmp_path: Path) -> None:
    records = _records(tmp_path)
    store = _store(tmp_path / "p0")
    store.catch_up([EventRecord(i, value, {HEADER_COMMAND_ID: f"c{i}"}) for i, value in enumerate(records)])
    compact = store.stored_reply("c1")
    assert compact is not None
    whole = encode_reply(msgspec.structs.replace(compact, command_id="old", event=msgspec.Raw(records[1])))
    store.kv.write([(dedupe_key("old"), whole)])

    reply = store.stored_reply("old")
    assert reply is not None and bytes(reply.event) == records[1]
    assert msgspec.structs.replace(reply, command_id="c1") == compact
    store.close()


def test_a_store_caught_up_from_the_log_holds_the_due_index_the_deciding_store_wrote(tmp_path: Path) -> None:
    """After a failover the new owner folds the events: what falls due must be in its store too."""
    kv = RocksKeyValue(str(tmp_path / "source"))
    Engine(kv, sync=False).write_now([RegisterSession(session_key="s", agent_from="a")])
    decided = [k for k, _ in kv.scan(due.PREFIX)]
    kv.close()
    store = _store(tmp_path / "p0")
    store.catch_up([EventRecord(i, value, {}) for i, value in enumerate(_records(tmp_path / "again"))])
    folded = [k for k, _ in store.kv.scan(due.PREFIX)]
    assert len(decided) == 1 and len(folded) == 1
    assert folded[0].endswith(b"\x00s")
    store.close()


def test_a_new_owner_catching_up_on_a_batch_answers_its_retries_with_the_batchs_last_event(tmp_path: Path) -> None:
    items = [ContextItem(context_type="file", content=f"File: {n}") for n in ("a.py", "b.ts", "c.js")]
    batch = AppendContextBatch(session_key="s", entries=items, idempotency_key="scan")
    kv = RocksKeyValue(str(tmp_path / "source"))
    engine = Engine(kv, sync=False)
    engine.write_now([RegisterSession(session_key="s", agent_from="a"), batch])
    records = [record for _, _, record in EventLog(kv).all_records()]
    kv.close()
    headers = [{HEADER_COMMAND_ID: "c0"}] + [{HEADER_COMMAND_ID: "c1", HEADER_DIGEST: command_digest(batch)}] * 3
    store = _store(tmp_path / "p0")
    stream = [EventRecord(i, value, h) for i, (value, h) in enumerate(zip(records, headers, strict=True))]
    assert store.catch_up(stream) == 4

    reply = store.stored_reply("c1")
    assert reply is not None and bytes(reply.event) == records[3]
    assert reply.receipt is not None and reply.receipt.version == 4 and reply.receipt.session.version == 4
    (retry,), _ = store.engine.decide_batch([batch])
    assert not isinstance(retry, Exception) and retry.replayed and retry.envelope.version == 4
    store.close()
