"""Audit and replay in Kafka mode: verify, replay, audit, export and import against a real broker."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from handoff.audit import kafka as kafka_audit
from handoff.audit import trail
from handoff.audit.kafka import export_kafka, import_kafka, replay_kafka, session_stream, verify_kafka
from handoff.audit.parallel import replay_in_parallel, split
from handoff.audit.transfer import export_lines, import_lines
from handoff.audit.verify import verify
from handoff.cli import main
from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel import commands as C
from handoff.kernel.codec import decode_envelope, seal_and_encode
from handoff.kernel.errors import InvalidArgument
from handoff.kernel.events import ContextAppended
from handoff.storage import keys
from handoff.storage.digest import digest
from handoff.storage.kv import InMemoryKeyValue, RocksKeyValue
from handoff.storage.log import EventLog
from kafka.support import Broker, read_keys, running_service, running_worker, served_digest
from kafka.test_equivalence import NO_JOBS, fake_clock, fake_ids, script
from projections.projector import Changes
from projections.viewstore import changes_to_writes, decode_entry
from streams.client import KafkaService
from streams.logreader import LogReader
from streams.topics import Topics

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Deployment:
    """A Kafka deployment after the equivalence script, and the embedded store that ran the same script."""

    bootstrap: str
    topics: Topics
    service: KafkaService
    embedded: InMemoryKeyValue


async def embedded_after_script() -> InMemoryKeyValue:
    kv = InMemoryKeyValue()
    # encrypt=False: sessions from before erasure, which retention skips. Encrypted ones dated 2026-01-01 would be
    # erased by the retention job of the real-clock workers the import tests start (30 days after they ended).
    # Imports with data keys: tests/kafka/test_erasure_kafka.py.
    engine = Engine(kv, clock=fake_clock(), new_id=fake_ids(), sync=False, encrypt=False)
    await engine.start()
    try:
        await script(EmbeddedService(engine))
    finally:
        await engine.stop()
    return kv


@pytest.fixture(scope="module")
async def deployment(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    topics = Topics(f"a{uuid.uuid4().hex[:8]}", 4)
    data = tmp_path_factory.mktemp("audit-w")
    async with running_worker(
        broker.bootstrap, topics, data, clock=fake_clock(), new_id=fake_ids(), job_defaults=NO_JOBS
    ):
        async with running_service(broker.bootstrap, topics) as svc:
            await script(svc)
            yield Deployment(broker.bootstrap, topics, svc, await embedded_after_script())


def keyed_digest(kv: InMemoryKeyValue) -> str:
    """The digest of `kv`'s views (written without data keys) as workers, which key every session, store them.

    The views are the same but for where an update_context's content is kept: a keyed session's entry
    view holds none (the log holds it, encrypted: `projections.viewstore`).
    """
    log, changes = EventLog(kv), Changes()
    for k, value in kv.scan(b"C:"):
        entry = decode_entry(value)
        session = k[2:].rpartition(b"\x00")[0].decode()
        record = log.record(session, entry.version)
        assert record is not None
        if type(decode_envelope(record).event) is ContextAppended:
            changes.entries[(session, entry.sequence_number)] = entry
            changes.in_log.add((session, entry.sequence_number))
    keyed = InMemoryKeyValue()
    keyed.write(list(kv.scan(b"")))
    keyed.write(changes_to_writes(changes))
    return digest(keyed)


def export_embedded(kv: InMemoryKeyValue) -> bytes:
    return b"".join(line + b"\n" for line in export_lines(kv))


ACCEL = pytest.mark.parametrize("accel", [True, False], ids=["accelerated", "public"])


@ACCEL
async def test_verify_passes_on_a_healthy_kafka_deployment_after_a_script(deployment: Deployment, accel: bool) -> None:
    prefix = deployment.topics.prefix
    report = await asyncio.to_thread(verify_kafka, deployment.bootstrap, prefix, quiet=True, accel=accel)
    assert report.ok, report.problems
    assert report.events == EventLog(deployment.embedded).count()
    assert report.live_digest == report.fresh_digest == await served_digest(deployment.service, deployment.topics)


async def test_verify_of_one_session_in_kafka_mode(deployment: Deployment) -> None:
    prefix = deployment.topics.prefix
    report = await asyncio.to_thread(verify_kafka, deployment.bootstrap, prefix, session="eq-3", quiet=True)
    assert report.ok, report.problems
    assert report.sessions == 1 and report.events == sum(1 for _ in EventLog(deployment.embedded).records("eq-3"))
    missing = await asyncio.to_thread(verify_kafka, deployment.bootstrap, prefix, session="nobody", quiet=True)
    assert [p.what for p in missing.problems] == [f"no such session in {deployment.topics.events}"]


@ACCEL
async def test_replay_from_kafka_equals_the_live_workers_and_the_embedded_engine(
    deployment: Deployment, tmp_path: Path, accel: bool
) -> None:
    target = RocksKeyValue(str(tmp_path / "replayed"))
    try:
        result = await asyncio.to_thread(
            replay_kafka, deployment.bootstrap, deployment.topics.prefix, target, quiet=True, accel=accel
        )
    finally:
        target.close()
    assert result.events == EventLog(deployment.embedded).count()
    served = await served_digest(deployment.service, deployment.topics)
    assert result.digest == served == keyed_digest(deployment.embedded)


def _ends(deployment: Deployment) -> dict[int, int]:
    with LogReader(deployment.bootstrap, deployment.topics.prefix) as reader:
        return reader.end_offsets()


def _replayed_items(deployment: Deployment, path: Path, jobs: int) -> list[tuple[bytes, bytes]]:
    """Every entry of a replay into a new RocksDB store: one process, or `jobs` side by side."""
    target = RocksKeyValue(str(path))
    try:
        if jobs == 1:
            replay_kafka(deployment.bootstrap, deployment.topics.prefix, target, quiet=True)
        else:
            ends = _ends(deployment)
            replay_in_parallel(deployment.bootstrap, deployment.topics.prefix, ends, target, jobs=jobs, quiet=True)
        return list(target.scan(b""))
    finally:
        target.close()


async def test_a_replay_by_several_processes_writes_the_same_bytes_as_one_process(
    deployment: Deployment, tmp_path: Path
) -> None:
    one = await asyncio.to_thread(_replayed_items, deployment, tmp_path / "one", 1)
    several = await asyncio.to_thread(_replayed_items, deployment, tmp_path / "three", 3)
    assert len(one) > 100 and several == one
    memory = InMemoryKeyValue()  # a store that cannot ingest SST files gets the entries copied
    ends = await asyncio.to_thread(_ends, deployment)
    result = await asyncio.to_thread(
        replay_in_parallel, deployment.bootstrap, deployment.topics.prefix, ends, memory, jobs=2, quiet=True
    )
    assert list(memory.scan(b"")) == one and result.events == EventLog(deployment.embedded).count()


def test_partitions_are_split_into_groups_of_about_equal_size() -> None:
    sizes = {0: 10, 1: 50, 2: 30, 3: 30, 4: 0}
    groups = split(sizes, 2)
    assert groups == [[0, 1, 4], [2, 3]] and [sum(sizes[p] for p in g) for g in groups] == [60, 60]
    assert split({0: 5}, 4) == [[0]]


async def test_audit_of_a_session_read_from_its_partition_re_derives_its_package(deployment: Deployment) -> None:
    stream = await asyncio.to_thread(session_stream, deployment.bootstrap, deployment.topics.prefix, "eq-1")
    steps = list(trail.timeline_of("eq-1", stream))
    assert [s.version for s in steps] == list(range(1, len(steps) + 1))
    packages = [s.package for s in steps if s.package is not None]
    assert len(packages) == 1 and packages[0].ok
    embedded = list(trail.timeline(EventLog(deployment.embedded), "eq-1"))
    assert steps == embedded


async def test_export_from_kafka_imports_into_a_fresh_data_dir_that_verifies(
    deployment: Deployment, tmp_path: Path
) -> None:
    lines = await asyncio.to_thread(lambda: list(export_kafka(deployment.bootstrap, deployment.topics.prefix)))
    kv = RocksKeyValue(str(tmp_path / "db"))
    try:
        import_lines(kv, io.BytesIO(b"".join(line + b"\n" for line in lines)))
        report = verify(kv, scratch=tmp_path, quiet=True)
        assert report.ok, report.problems
        assert report.live_digest == keyed_digest(deployment.embedded)  # the export carries the data keys
    finally:
        kv.close()


async def test_import_into_kafka_refuses_a_topic_that_holds_other_events_and_writes_nothing(
    deployment: Deployment,
) -> None:
    other = InMemoryKeyValue()
    engine = Engine(other, sync=False, encrypt=False)
    engine.write_now([C.RegisterSession(session_key="eq-0", agent_from="someone-else")])  # not the deployment's eq-0

    def ends() -> dict[int, int]:
        with LogReader(deployment.bootstrap, deployment.topics.prefix) as reader:
            return reader.end_offsets()

    before = await asyncio.to_thread(ends)
    lines = io.BytesIO(export_embedded(other))
    with pytest.raises(InvalidArgument, match=r"partition \d+ offset 0 holds an event that is not the file's next"):
        await asyncio.to_thread(import_kafka, deployment.bootstrap, deployment.topics, lines)
    assert await asyncio.to_thread(ends) == before


async def test_an_interrupted_import_into_kafka_resumes_where_it_stopped(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = Topics(f"r{uuid.uuid4().hex[:8]}", 4)
    exported = export_embedded(deployment.embedded)
    per_partition = [0] * topics.partitions
    for line in exported.splitlines():
        per_partition[topics.partition_for(json.loads(line)["subject"])] += 1
    publish = kafka_audit.publish_partition

    async def cut_off(
        bootstrap: str, to: Topics, partition: int, records: Iterable[tuple[bytes, bytes]], **security: Any
    ) -> int:
        """Partitions 0 and 1 whole, the first 3 events of partition 2, then the connection is lost."""
        if partition < 2:
            return await publish(bootstrap, to, partition, records, **security)
        if partition == 2:
            await publish(bootstrap, to, partition, itertools.islice(records, 3), **security)
        raise ConnectionError("the broker went away")

    with monkeypatch.context() as patched:
        patched.setattr(kafka_audit, "publish_partition", cut_off)
        with pytest.raises(ConnectionError):
            await asyncio.to_thread(import_kafka, deployment.bootstrap, topics, io.BytesIO(exported))
    result = await asyncio.to_thread(import_kafka, deployment.bootstrap, topics, io.BytesIO(exported))
    assert result.already == per_partition[0] + per_partition[1] + 3
    assert result.events == sum(per_partition) - result.already
    async with running_worker(deployment.bootstrap, topics, tmp_path / "w"):
        async with running_service(deployment.bootstrap, topics) as svc:
            assert await served_digest(svc, topics) == digest(deployment.embedded)
    again = await asyncio.to_thread(import_kafka, deployment.bootstrap, topics, io.BytesIO(exported))
    assert (again.events, again.already) == (0, sum(per_partition))  # the same file again: nothing left to write


async def test_export_from_embedded_then_import_into_kafka_gives_the_same_projections(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topics = Topics(f"i{uuid.uuid4().hex[:8]}", 4)
    lines = io.BytesIO(export_embedded(deployment.embedded))
    result = await asyncio.to_thread(import_kafka, deployment.bootstrap, topics, lines)
    assert result.events == EventLog(deployment.embedded).count()
    # no worker yet: the chains are checked, the views cannot be, and verify says so rather than "BROKEN"
    argv = ["verify", "--kafka", deployment.bootstrap, "--topic-prefix", topics.prefix]
    assert await asyncio.to_thread(main, argv) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"INCOMPLETE: {result.events} events in {result.sessions} sessions; every chain holds, " + (
        "but not every view could be compared:"
    )
    assert out[1:] == [f"  partition {p} has no live worker; its views were not compared" for p in range(4)]
    async with running_worker(deployment.bootstrap, topics, tmp_path / "w") as worker:
        async with running_service(deployment.bootstrap, topics) as svc:
            assert await served_digest(svc, topics) == digest(deployment.embedded)
            report = await asyncio.to_thread(verify_kafka, deployment.bootstrap, topics.prefix, quiet=True)
            assert report.ok, report.problems
            # an imported session is decidable: its state was folded from the imported log
            before = await svc.session("eq-0")
            assert before is not None
            out = await svc.submit(C.AppendContext(session_key="eq-0", context_type="message", content="after import"))
            assert out.envelope.version == before.version + 1
            again = await asyncio.to_thread(verify_kafka, deployment.bootstrap, topics.prefix, quiet=True)
            assert again.ok, again.problems
            # a view edited behind the worker's back: verify names its partition
            p = topics.partition_for("eq-0")
            store = worker.ready_stores()[p]
            view = msgspec.msgpack.decode(store.kv.get(keys.session_key("eq-0")) or b"")
            view["agentFrom"] = "mallory"
            store.kv.write([(keys.session_key("eq-0"), msgspec.msgpack.encode(view))])
            edited = await asyncio.to_thread(verify_kafka, deployment.bootstrap, topics.prefix, quiet=True)
            assert [pr.what.split(" (")[0] for pr in edited.problems] == [f"the views of partition {p}"]


async def test_import_into_kafka_refuses_while_a_worker_is_running(deployment: Deployment, tmp_path: Path) -> None:
    topics = Topics(f"j{uuid.uuid4().hex[:8]}", 4)
    async with running_worker(deployment.bootstrap, topics, tmp_path / "w"):  # its topics exist and are empty
        lines = io.BytesIO(export_embedded(deployment.embedded))
        with pytest.raises(InvalidArgument, match="worker"):
            await asyncio.to_thread(import_kafka, deployment.bootstrap, topics, lines)


async def _imported_copy(deployment: Deployment) -> Topics:
    """A deployment without workers whose log is the embedded store's (a test may tamper with it)."""
    topics = Topics(f"x{uuid.uuid4().hex[:8]}", 4)
    await asyncio.to_thread(
        import_kafka, deployment.bootstrap, topics, io.BytesIO(export_embedded(deployment.embedded))
    )
    return topics


async def _publish(bootstrap: str, topics: Topics, key: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.events, value, key=key.encode(), partition=topics.partition_for(key))
    finally:
        await producer.stop()


def _cli_verify(bootstrap: str, topics: Topics) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "handoff", "verify", "--kafka", bootstrap, "--topic-prefix", topics.prefix, "--json"],
        capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO, timeout=120,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


async def test_verify_names_the_session_and_version_of_a_tampered_copy_published_into_the_events_topic(
    deployment: Deployment,
) -> None:
    topics = await _imported_copy(deployment)
    record = deployment.embedded.get(b"E:eq-2\x00%012d" % 3)
    assert record is not None
    at = record.index(b'"content":"') + 12
    await _publish(deployment.bootstrap, topics, "eq-2", record[:at] + bytes([record[at] ^ 0x01]) + record[at + 1 :])
    code, report = await asyncio.to_thread(_cli_verify, deployment.bootstrap, topics)
    assert code == 1
    first = report["problems"][0]  # type: ignore[index]
    assert (first["session"], first["version"]) == ("eq-2", 3)
    assert "duplicated" in first["error"] and "hash mismatch" in first["error"]
    assert first["at"].startswith(f"partition {topics.partition_for('eq-2')} offset ")


async def test_verify_names_the_missing_version_of_a_gap_in_the_events_topic(deployment: Deployment) -> None:
    topics = await _imported_copy(deployment)
    log = EventLog(deployment.embedded)
    last = max(v for v, _ in log.records("eq-4"))
    env = decode_envelope(log.record("eq-4", last) or b"")
    _, gap = seal_and_encode(msgspec.structs.replace(env, version=last + 2, prev_hash=env.hash, event_id="f" * 32))
    await _publish(deployment.bootstrap, topics, "eq-4", gap)
    report = await asyncio.to_thread(verify_kafka, deployment.bootstrap, topics.prefix, quiet=True)
    first = report.problems[0]
    assert (first.session, first.version) == ("eq-4", last + 1)
    assert "missing" in first.what


async def test_import_into_kafka_writes_an_exports_data_keys_to_the_keys_topic(deployment: Deployment) -> None:
    kv = InMemoryKeyValue()
    engine = Engine(kv, sync=False)  # an embedded store encrypts its sessions (docs/erasure.md)
    engine.write_now([C.RegisterSession(session_key="secret-1", agent_from="alice", metadata={"m": "x"})])
    topics = Topics(f"k{uuid.uuid4().hex[:8]}", 4)
    await asyncio.to_thread(import_kafka, deployment.bootstrap, topics, io.BytesIO(export_embedded(kv)))
    cipher = engine.datakeys.cipher("secret-1")
    assert cipher is not None and await read_keys(deployment.bootstrap, topics) == {"secret-1": cipher.key}
