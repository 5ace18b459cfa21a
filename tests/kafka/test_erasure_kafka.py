"""CONTRACT §8 Erasure in Kafka mode: data keys in ``<prefix>.keys``, content encrypted in the events topic,
``handoff purge --kafka``, retention by the partition's owner, failover, and the audit tools after an erasure.

The workers run in this process (the failover test kills one in a child process), with a clock the
retention test moves. After an erasure no record of the events, keys, commands or replies topic (aborted
transactions' records included) holds the content, and no file of a worker's RocksDB store does: the
events are encrypted and their key is a tombstone, the decided command records are deleted by their
worker right after the erasure (streams.trimming), and the replies were sealed under keys that only
those command records held.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from handoff.audit.kafka import export_kafka, import_kafka, replay_kafka, verify_kafka
from handoff.audit.transfer import export_lines
from handoff.cli import main
from handoff.engine.engine import Engine
from handoff.kernel.commands import AppendContext, CloseSession, RegisterSession, RequestHandoff
from handoff.kernel.events import ContextAppended, HandoffRequested
from handoff.kernel.operations import decide_configuration
from handoff.storage.kv import InMemoryKeyValue, RocksKeyValue
from kafka.support import (
    Broker,
    WorkerProcess,
    read_keys,
    read_topic,
    running_service,
    running_worker,
    served_digest,
    wait_until,
)  # fmt: skip
from kafka.test_expiry_kafka import ManualClock
from streams.client import KafkaService
from streams.topics import Topics

pytestmark = pytest.mark.anyio

DAY = 86_400


def _topics() -> Topics:
    return Topics(f"e{uuid.uuid4().hex[:8]}", 2)


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def _raw_values(broker: Broker, topics: Topics, *, commands: bool = True) -> Iterator[bytes]:
    """Every record value of the topics that hold what sessions wrote; `commands=False`: all but the queue's."""
    found: list[bytes] = []
    names = [topics.events, topics.keys, topics.replies] + ([topics.commands] if commands else [])
    for topic in names:
        records = await read_topic(broker.bootstrap, topic, topics.partitions, aborted=True)
        found += [bytes(m.value) for m in records if m.value]
    return iter(found)


async def _until_in_no_record(broker: Broker, topics: Topics, needle: bytes) -> None:
    """Wait until no record holds `needle` (the decided commands go a moment after the erasure's reply)."""

    async def gone() -> bool:
        return not any(needle in value for value in await _raw_values(broker, topics))

    await wait_until(gone, 15, "the erased session's content to leave every topic")


async def _write(svc: KafkaService, key: str, marker: str) -> str:
    await svc.submit(RegisterSession(session_key=key, agent_from="a", metadata={"note": marker}))
    out = await svc.submit(AppendContext(session_key=key, context_type="message", content=f"{marker} typed"))
    assert isinstance(out.envelope.event, ContextAppended) and out.envelope.event.content == f"{marker} typed"
    req = await svc.submit(RequestHandoff(session_key=key, target_agent="b", request_data={"why": marker}))
    assert isinstance(req.envelope.event, HandoffRequested) and req.envelope.event.request_data == {"why": marker}
    return req.envelope.event.handoff_id


async def _cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


@asynccontextmanager
async def _deployment(broker: Broker, topics: Topics, data: Path, **kw: object) -> AsyncIterator[KafkaService]:
    async with running_worker(broker.bootstrap, topics, data, **kw), running_service(broker.bootstrap, topics) as svc:
        yield svc


@pytest.mark.parametrize("accel", [True, False], ids=["accelerated", "public"])  # both transaction paths
async def test_purge_over_kafka_leaves_the_content_in_no_topic_record_or_worker_file_and_verify_says_erased(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str], accel: bool
) -> None:
    topics = _topics()
    gone, live = f"GONE-{uuid.uuid4().hex}", f"LIVE-{uuid.uuid4().hex}"
    kafka = ["--kafka", broker.bootstrap, "--topic-prefix", topics.prefix]
    # No timed rounds of deletion: here only the erasure deletes decided command records.
    async with _deployment(broker, topics, tmp_path / "w", kafka_accel=accel, trim_every=3600) as svc:
        hid = await _write(svc, "gone", gone)
        await _write(svc, "live", live)
        for value in await _raw_values(broker, topics, commands=False):  # encrypted before sealed; replies sealed
            assert gone.encode() not in value and live.encode() not in value
        assert any(gone.encode() in value for value in await _raw_values(broker, topics))  # a command, undeleted
        keys = await read_keys(broker.bootstrap, topics)
        assert set(keys) == {"gone", "live"}
        gone_key = keys["gone"]

        assert await _cli("purge", "gone", "--reason", "user asked", "--json", *kafka) == 0
        assert json.loads(capsys.readouterr().out)["erased"] is True

        session = await svc.session("gone")
        assert session is not None and session.erased and session.status == "closed"
        entries, _ = await svc.context("gone", 0, 100)
        assert all(e.erased and e.content == "" for e in entries if e.context_type != "system")
        handoff = await svc.handoff(hid)
        assert handoff is not None and handoff.status == "cancelled" and not handoff.request_data
        shown, _ = await svc.context("live", 0, 100)
        assert [e.content for e in shown if e.context_type == "message"] == [f"{live} typed"]

        assert "gone" not in await read_keys(broker.bootstrap, topics)  # its last record is a tombstone
        await _until_in_no_record(broker, topics, gone.encode())
        assert _files_holding(tmp_path / "w", gone.encode()) == []
        assert _files_holding(tmp_path / "w", gone_key) == []

        assert await _cli("verify", *kafka) == 0
        out = capsys.readouterr().out
        assert "ERASED: session 'gone'" in out and "BROKEN" not in out
        report = await asyncio.to_thread(verify_kafka, broker.bootstrap, topics.prefix, quiet=True)
        assert report.ok and report.erased == ["gone"]

        target = RocksKeyValue(str(tmp_path / "replayed"))
        try:
            replayed = await asyncio.to_thread(replay_kafka, broker.bootstrap, topics.prefix, target, quiet=True)
        finally:
            target.close()
        assert replayed.digest == await served_digest(svc, topics)
        assert _files_holding(tmp_path / "replayed", gone.encode()) == []

        lines = await asyncio.to_thread(lambda: list(export_kafka(broker.bootstrap, topics.prefix)))
        assert not any(gone.encode() in line for line in lines)
        datakeys = [json.loads(line)["subject"] for line in lines if b'"handoff.datakey"' in line]
        assert datakeys == ["live"]

        assert await _cli("purge", "gone", "--reason", "again", *kafka) == 2  # already erased
        assert await _cli("purge", "nobody", "--reason", "r", *kafka) == 2
        assert "nobody" in capsys.readouterr().err


async def test_after_a_sigkill_failover_the_new_owner_has_the_keys_and_purges(broker: Broker, tmp_path: Path) -> None:
    topics = _topics()
    marker = f"FAILOVER-{uuid.uuid4().hex}"
    first = WorkerProcess(broker.bootstrap, topics, tmp_path / "a", tmp_path / "a.log")
    first.start()
    try:
        async with running_service(broker.bootstrap, topics, timeout=30) as svc:
            await _write(svc, "s", marker)
        first.kill()
        async with _deployment(broker, topics, tmp_path / "b") as svc:
            entries, _ = await svc.context("s", 0, 100)  # the new owner folded the log with the key it loaded
            assert [e.content for e in entries if e.context_type == "message"] == [f"{marker} typed"]
            view = await svc.session("s")
            assert view is not None and view.metadata == {"note": marker}
            kafka = ["--kafka", broker.bootstrap, "--topic-prefix", topics.prefix]
            assert await _cli("purge", "s", "--reason", "after failover", *kafka) == 0
            view = await svc.session("s")
            assert view is not None and view.erased
            assert _files_holding(tmp_path / "b", marker.encode()) == []
    finally:
        first.stop()
    # The killed owner's store still shows the session until it is given the partition again: then it folds
    # SessionErased, drops the key and rewrites what it showed (docs/erasure.md, "Kafka mode").
    async with _deployment(broker, topics, tmp_path / "a") as svc:
        view = await svc.session("s")
        assert view is not None and view.erased
    assert _files_holding(tmp_path / "a", marker.encode()) == []


async def test_the_retention_job_erases_an_ended_session_of_its_partitions_once_its_configured_days_ran_out(
    broker: Broker, tmp_path: Path
) -> None:
    topics = _topics()
    clock = ManualClock()
    marker = f"RETAINED-{uuid.uuid4().hex}"
    async with running_worker(broker.bootstrap, topics, tmp_path / "w", clock=clock) as worker:
        async with running_service(broker.bootstrap, topics) as svc:
            await svc.submit(RegisterSession(session_key="short", agent_from="a", retention_policy="short"))
            await svc.submit(AppendContext(session_key="short", context_type="message", content=marker))
            await svc.submit(CloseSession(session_key="short", agent="a"))
            await svc.submit(RegisterSession(session_key="open", agent_from="a", retention_policy="short"))
            days = {"eraseAfterDays": {"short": 3}}  # as update_configuration does, through the operations log
            await worker.jobs.feed.append(lambda st: decide_configuration(st, "retention", days, None), "operator:t")
            clock.advance(2 * DAY)
            early = await worker.jobs.runner.run_now("retention")
            assert early.result["erased"] == 0, early
            clock.advance(DAY + 60)  # "short", as configured: erased 3 days after it ended
            run = await worker.jobs.runner.run_now("retention")
            assert run.result["erased"] == 1, run

            async def erased() -> bool:
                view = await svc.session("short")
                return view is not None and view.erased

            await wait_until(erased, 30, "the owner to erase the session whose retention ran out")
            still = await svc.session("open")
            assert still is not None and not still.erased
            again = await worker.jobs.runner.run_now("retention")
            assert again.result["erased"] == 0, again
            await _until_in_no_record(broker, topics, marker.encode())
            assert _files_holding(tmp_path / "w", marker.encode()) == []
            report = await asyncio.to_thread(verify_kafka, broker.bootstrap, topics.prefix, quiet=True)
            assert report.ok and report.erased == ["short"], report


async def test_an_import_with_data_keys_and_sessions_from_before_erasure_reads_and_purges_as_embedded(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kv = InMemoryKeyValue()
    legacy = Engine(kv, sync=False, encrypt=False)  # a session written before erasure existed: in the clear
    legacy.write_now([RegisterSession(session_key="old", agent_from="a")])
    legacy.write_now([AppendContext(session_key="old", context_type="message", content="old words")])
    engine = Engine(kv, sync=False)
    engine.write_now([RegisterSession(session_key="new", agent_from="a")])
    engine.write_now([AppendContext(session_key="new", context_type="message", content="new words")])
    lines = b"".join(line + b"\n" for line in export_lines(kv))
    assert b'"handoff.datakey"' in lines

    topics = _topics()
    await asyncio.to_thread(import_kafka, broker.bootstrap, topics, io.BytesIO(lines))
    assert set(await read_keys(broker.bootstrap, topics)) == {"new"}
    kafka = ["--kafka", broker.bootstrap, "--topic-prefix", topics.prefix]
    async with _deployment(broker, topics, tmp_path / "w") as svc:
        for key, words in (("old", "old words"), ("new", "new words")):
            entries, _ = await svc.context(key, 0, 100)
            assert [e.content for e in entries if e.context_type == "message"] == [words]
        capsys.readouterr()
        assert await _cli("purge", "old", "--reason", "r", *kafka) == 2
        assert "written before erasure existed" in capsys.readouterr().err
        assert await _cli("purge", "new", "--reason", "r", *kafka) == 0
        assert await _cli("verify", *kafka) == 0
