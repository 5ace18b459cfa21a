"""Analytics in Kafka mode: the faust app answers as the embedded engine does for the same imported log.

One log is written by an embedded engine whose clock runs from 30 hours ago to now (so the 1h, 24h
and 7d windows differ), exported, then imported with `handoff import` into a data dir and with
`handoff import --kafka` into fresh topics. `handoff serve` on the data dir and `handoff serve
--kafka` reading `handoff analytics` must give the same `get_analytics` answers; so must the app
after a SIGKILL in the middle of folding, and after losing its RocksDB files (recovered from its
changelog). A worker runs beside the app each time: the log is older than a session's retention, so
the embedded engine's sweeper expires sessions, and in Kafka mode the worker's does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from integration.harness import Served, child_env, handoff_command, http_client, ok, start_server

from handoff.audit.transfer import export_lines
from handoff.cli import main
from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel import commands as C
from handoff.storage.kv import InMemoryKeyValue
from handoff.storage.log import EventLog
from kafka.secure import SecureBroker
from kafka.support import Broker, read_events, wait_until
from kafka.test_equivalence import fake_ids, script
from streams.analytics_client import AnalyticsClient
from streams.analytics_gaps import KafkaReadBack
from streams.client import KafkaService
from streams.security import KafkaSecurity
from streams.topics import Topics

pytestmark = pytest.mark.anyio

QUERIES = [(w, a) for w in ("1h", "24h", "7d") for a in (None, "b", "agent-1")]


def recent_clock() -> Callable[[], str]:
    """A clock from 30 hours ago, 35 minutes later at every call, never past now."""
    start, n = datetime.now(UTC) - timedelta(hours=30), [0]

    def now() -> str:
        n[0] += 1
        at = min(start + timedelta(minutes=35 * n[0]), datetime.now(UTC))
        return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return now


@pytest.fixture(scope="module")
async def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kv = InMemoryKeyValue()
    engine = Engine(kv, clock=recent_clock(), new_id=fake_ids(), sync=False)
    await engine.start()
    try:
        await script(EmbeddedService(engine))
    finally:
        await engine.stop()
    path = tmp_path_factory.mktemp("analytics-log") / "log.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in export_lines(kv)))
    return path


@contextmanager
def process(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "ab") as log:
        env = {**child_env(), **(env or {})}
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def analytics_cmd(bootstrap: str, topics: Topics, data_dir: Path, port: int) -> list[str]:
    return [
        *handoff_command(), "analytics", "--kafka", bootstrap, "--data-dir", str(data_dir), "--web-port", str(port),
        "--topic-prefix", topics.prefix, "--partitions", str(topics.partitions),
    ]  # fmt: skip


async def answers_over_mcp(url: str) -> list[dict[str, Any]]:
    out = []
    async with http_client(url) as client:
        for window, agent in QUERIES:
            args = {"window": window} if agent is None else {"window": window, "agent": agent}
            out.append((await ok(client, "get_analytics", args))["analytics"])
    return out


async def answers_of_app(url: str) -> list[dict[str, Any]]:
    client = AnalyticsClient(url)
    return [await client.analytics(w, a) for w, a in QUERIES]


def differences(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> str:
    """The fields of each answer that differ, for a failure message."""
    lines = []
    for (window, agent), mine, theirs in zip(QUERIES, got, expected, strict=True):
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) != theirs.get(name):
                lines.append(f"{window} {agent or '*'} {name}: got {mine.get(name)!r}, expected {theirs.get(name)!r}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def embedded(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("analytics-embedded")
    assert main(["import", "--data-dir", str(root / "data"), "--in", str(exported)]) == 0
    served = start_server(root / "data", root / "serve.log")
    try:
        yield served
    finally:
        served.stop()


async def expected(embedded: Served) -> list[dict[str, Any]]:
    answers = await answers_over_mcp(embedded.mcp_url)
    assert answers[0]["window"] == "1h" and answers[3]["window"] == "24h"
    assert answers[3]["handoffs"] and answers[3]["sessionsByStatus"], answers[3]
    assert answers[3]["handoffs"] != answers[6]["handoffs"], "the log should reach beyond 24 h"
    return answers


async def until_agrees(read: Callable[[], Any], embedded: Served, deadline: float, what: str) -> None:
    """Poll until `read()` equals the embedded engine's answers, taken just before (in the same hour: an hour
    rolling over moves every window); on timeout, say what differed last."""
    last = ["no answer yet"]

    async def agrees() -> bool:
        wanted = await expected(embedded)
        try:
            got = await read()
        except Exception as exc:  # noqa: BLE001 - the app is still starting: not yet
            last[0] = f"no answer yet: {exc!r}"
            return False
        last[0] = differences(got, wanted)
        return bool(got == wanted)

    try:
        await wait_until(agrees, deadline, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last difference:\n{last[0]}") from None


async def test_the_faust_app_answers_get_analytics_as_the_embedded_engine_does(
    broker: Broker, exported: Path, embedded: Served, tmp_path: Path
) -> None:
    topics = Topics(f"an{uuid.uuid4().hex[:8]}", 4)
    argv = ["import", "--kafka", broker.bootstrap, "--topic-prefix", topics.prefix, "--partitions", "4"]
    assert await asyncio.to_thread(main, [*argv, "--in", str(exported)]) == 0
    await produce_aborted_session(broker.bootstrap, topics)  # the app must read committed events only
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    with process(analytics_cmd(broker.bootstrap, topics, tmp_path / "app", port), tmp_path / "app.log") as app:
        async with worker_on(broker.bootstrap, topics, tmp_path):
            with pytest.MonkeyPatch.context() as mp:
                for name, value in {**topic_settings(topics), "HANDOFF_ANALYTICS_URL": app_url}.items():
                    mp.setenv(name, value)
                adapter = start_server(tmp_path / "serve", tmp_path / "serve.log", "--kafka", broker.bootstrap)
            try:
                await until_agrees(lambda: answers_over_mcp(adapter.mcp_url), embedded, 120, "serve --kafka to agree")
            finally:
                adapter.stop()
        assert app.poll() is None, (tmp_path / "app.log").read_text()[-4000:]
    await check_changelog_is_compact_only(broker.bootstrap, topics)


async def test_reading_back_finds_the_committed_versions_of_a_session_below_an_offset(
    broker: Broker, exported: Path
) -> None:
    topics = Topics(f"ar{uuid.uuid4().hex[:8]}", 4)
    argv = ["import", "--kafka", broker.bootstrap, "--topic-prefix", topics.prefix, "--partitions", "4"]
    assert await asyncio.to_thread(main, [*argv, "--in", str(exported)]) == 0
    await produce_aborted_session(broker.bootstrap, topics)
    events = await read_events(broker.bootstrap, topics, shown=False)
    partition, _, last, _ = max(events, key=lambda e: e[2].version)  # the longest session's last event
    session = [(offset, env) for p, offset, env, _ in events if p == partition and env.session_key == last.session_key]
    read = KafkaReadBack(broker.bootstrap, topics.events)
    got = await read(partition, session[-1][0], last.session_key, range(1, last.version))
    assert got == [env for _, env in session[:-1]]
    got = await read(partition, session[3][0], last.session_key, range(2, last.version))  # only below version 4
    assert [env.version for env in got] == [2, 3]
    ghost = topics.partition_for("ghost-0")  # its registration was aborted: not read back
    assert await read(ghost, 1 << 30, "ghost-0", range(1, 2)) == []


def topic_settings(topics: Topics) -> dict[str, str]:
    return {"HANDOFF_KAFKA_TOPIC_PREFIX": topics.prefix, "HANDOFF_KAFKA_PARTITIONS": str(topics.partitions)}


@asynccontextmanager
async def worker_on(
    bootstrap: str, topics: Topics, tmp_path: Path, env: dict[str, str] | None = None
) -> AsyncIterator[None]:
    """A `handoff worker` owning every partition of `topics` (ready on return), stopped at the end.

    Kafka mode's expiry sweeper: the imported log spans 30 hours, so some of its sessions have been idle
    for longer than the standard retention (24 h). The embedded engine expires them at its first sweep;
    in Kafka mode the worker owning the partition does, and the app folds those expiries from the log.
    Without a worker the app never sees them and never agrees (the restart test timed out on that).
    """
    cmd = [*handoff_command(), "worker", "--kafka", bootstrap, "--data-dir", str(tmp_path / "worker")]
    with process(cmd, tmp_path / "worker.log", {**topic_settings(topics), **(env or {})}) as worker:
        svc = KafkaService(bootstrap, topics=topics, security=KafkaSecurity.from_options(None, env or {}))
        await svc.start()
        try:
            await wait_until(svc.ready, 120, "every partition to have a ready worker")
        finally:
            await svc.stop()
        yield
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-4000:]


async def produce_aborted_session(bootstrap: str, topics: Topics) -> None:
    """A registration of session ``ghost-0`` appended to the log in a transaction that is then aborted."""
    kv = InMemoryKeyValue()
    engine = Engine(kv, sync=False)
    await engine.start()
    try:
        await engine.submit(C.RegisterSession(session_key="ghost-0", agent_from="ghost"))
    finally:
        await engine.stop()
    record = EventLog(kv).record("ghost-0", 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topics.prefix}.ghost")
    await producer.start()
    try:
        await producer.begin_transaction()
        partition = topics.partition_for("ghost-0")
        await producer.send_and_wait(topics.events, record, key=b"ghost-0", partition=partition)
        await producer.abort_transaction()
    finally:
        await producer.stop()


async def check_changelog_is_compact_only(bootstrap: str, topics: Topics) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        name = f"{topics.prefix}.analytics-analytics-changelog"
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        configs = {c[0]: c[1] for c in described[0].resources[0][4]}
        assert configs["cleanup.policy"] == "compact", configs["cleanup.policy"]
    finally:
        await admin.close()


@pytest.mark.restart
async def test_killing_the_app_mid_fold_and_restarting_it_gives_the_same_answers(
    broker: Broker, exported: Path, embedded: Served, tmp_path: Path
) -> None:
    topics = Topics(f"ak{uuid.uuid4().hex[:8]}", 4)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = analytics_cmd(broker.bootstrap, topics, tmp_path / "app", port)
    argv = ["import", "--kafka", broker.bootstrap, "--topic-prefix", topics.prefix, "--partitions", "4"]
    assert await asyncio.to_thread(main, [*argv, "--in", str(exported)]) == 0
    async with worker_on(broker.bootstrap, topics, tmp_path):
        with process(cmd, tmp_path / "app.log") as app:

            async def folding() -> bool:  # some of the log folded, not necessarily all
                try:
                    return bool((await AnalyticsClient(url).analytics("7d", None))["busiestAgents"])
                except Exception:  # noqa: BLE001 - not serving yet
                    return False

            await wait_until(folding, 120, "the app to start folding")
            os.kill(app.pid, signal.SIGKILL)
            app.wait(10)
        with process(cmd, tmp_path / "app.log") as app:
            await until_agrees(lambda: answers_of_app(url), embedded, 120, "the restarted app to agree")
            os.kill(app.pid, signal.SIGKILL)
            app.wait(10)
        # its RocksDB files lost: the table comes back from the changelog alone
        shutil.rmtree(tmp_path / "app")
        with process(cmd, tmp_path / "app.log"):
            rebuilt = "the app rebuilt from its changelog to agree"
            await until_agrees(lambda: answers_of_app(url), embedded, 180, rebuilt)


# -- a secured cluster: the app takes the workers' Kafka security settings ----------------------------------------


async def test_the_app_folds_and_answers_over_sasl_ssl_with_the_workers_settings(
    secured: SecureBroker, exported: Path, embedded: Served, tmp_path: Path
) -> None:
    topics = Topics(f"as{uuid.uuid4().hex[:8]}", 4)
    (tmp_path / "password").write_text(secured.password + "\n")
    flags = [
        "--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-mechanism", "SCRAM-SHA-256",
        "--kafka-sasl-username", secured.username, "--kafka-sasl-password-file", str(tmp_path / "password"),
        "--kafka-ssl-cafile", str(secured.cafile),
    ]  # fmt: skip
    argv = ["import", "--kafka", secured.bootstrap, "--topic-prefix", topics.prefix, "--partitions", "4", *flags]
    assert await asyncio.to_thread(main, [*argv, "--in", str(exported)]) == 0
    port = free_port()
    # the app as flags, the worker from HANDOFF_KAFKA_*: both forms of the same settings
    app_cmd = [*analytics_cmd(secured.bootstrap, topics, tmp_path / "app", port), *flags]
    with process(app_cmd, tmp_path / "app.log") as app:
        async with worker_on(secured.bootstrap, topics, tmp_path, secured.env()):
            url = f"http://127.0.0.1:{port}"
            await until_agrees(lambda: answers_of_app(url), embedded, 120, "the app on SASL_SSL to agree")
        assert app.poll() is None, (tmp_path / "app.log").read_text()[-4000:]


def test_the_app_with_a_wrong_password_exits_1_naming_the_authentication_failure(
    secured: SecureBroker, tmp_path: Path
) -> None:
    cmd = analytics_cmd(secured.bootstrap, Topics("refused", 4), tmp_path / "app", free_port())
    env = {k: v for k, v in child_env().items() if not k.startswith("HANDOFF_KAFKA_")}
    done = subprocess.run(
        cmd, env={**env, **secured.env(password="wrong")}, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Kafka refused this client's credentials (SASL authentication failed)" in done.stderr, done.stderr[-3000:]
