"""Helpers of the cluster tier: the three-node cluster's handle, MCP and platform load, and the log's checks."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from integration.harness import Served, base_url, child_env, handoff_command, http_get, read_engine_file, wait_for
from kafka.support import WorkerProcess, read_events

from handoff.kernel.commands import AppendContext
from handoff.kernel.events import GENESIS_HASH, ContextAppended
from streams.records import CommandRecord, encode_command
from streams.topiccheck import retrying
from streams.topics import Topics

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    """Three KRaft nodes from compose/kafka-local.sh; node numbers are the brokers' node ids."""

    bootstrap: str
    script: Path
    env: dict[str, str]

    def run(self, *args: str) -> str:
        done = subprocess.run([str(self.script), *args], env=self.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"kafka-local.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}"
        return done.stdout

    def kill(self, node: int) -> None:
        """SIGKILL: a crash, no controlled shutdown."""
        self.run("kill", str(node))

    def stop(self, node: int) -> None:
        self.run("stop", str(node))

    def start(self, *nodes: int) -> None:
        """Start those nodes together (a no-op for running ones) and wait until they serve."""
        self.run("start", *map(str, nodes))

    async def admin(self) -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5_000)
        await admin.start()
        return admin

    async def leaders(self, names: list[str]) -> Counter[int]:
        """How many partitions of the topics `names` each node leads."""
        admin = await self.admin()
        try:
            described = await retrying(lambda: admin.describe_topics(names))
        finally:
            await admin.close()
        return Counter(p["leader"] for t in described for p in t["partitions"] if p["leader"] >= 0)

    async def until_in_sync(self, names: list[str], deadline: float = 120) -> float:
        """Wait until every partition of `names` has all its replicas in sync again; the seconds it took."""
        start = time.monotonic()
        admin = await self.admin()
        try:

            async def in_sync() -> bool:
                try:
                    described = await admin.describe_topics(names)
                except KafkaError:
                    return False
                parts = [p for t in described for p in t["partitions"]]
                return bool(parts) and all(sorted(p["isr"]) == sorted(p["replicas"]) for p in parts)

            await until(in_sync, deadline, f"every replica of {names} back in sync")
        finally:
            await admin.close()
        return time.monotonic() - start

    async def coordinators(self, transactional_ids: list[str]) -> Counter[int]:
        """How many of the transactional ids each node coordinates."""
        admin = await self.admin()
        try:
            nodes = [await retrying(lambda t=t: admin.find_coordinator(t, 1)) for t in transactional_ids]  # 1: txn
        finally:
            await admin.close()
        return Counter(nodes)


async def until(condition: Callable[[], Awaitable[Any]], deadline: float, what: str) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(0.2)


# -- load ----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the load saw: the figures the issue asks for, and every acknowledged write."""

    acked: dict[str, tuple[str, int]] = field(default_factory=dict)  # content -> (session, sequence number)
    platform: set[str] = field(default_factory=set)  # contents of acknowledged platform records
    unavailable: int = 0
    retries: int = 0
    gave_up: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def writes(self) -> int:
        return len(self.acked) + len(self.platform)

    def figures(self, name: str, **more: Any) -> dict[str, Any]:
        return {
            "test": name, "writes": self.writes, "mcp": len(self.acked), "platform": len(self.platform),
            "seconds": round(time.monotonic() - self.started, 1), "unavailable": self.unavailable,
            "retries": self.retries, "gaveUp": self.gave_up, **more,
        }  # fmt: skip


class McpClient:
    """One MCP session over streamable HTTP (JSON-RPC, the 2025-11-25 handshake), as a light client would."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url, self.ids, self.reconnects = http, url, 0, 0
        self.headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

    async def _post(self, method: str, params: dict[str, Any], notify: bool = False) -> dict[str, Any]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if not notify:
            self.ids += 1
            msg["id"] = self.ids
        timeout = aiohttp.ClientTimeout(total=60)
        async with self.http.post(self.url, data=json.dumps(msg), headers=self.headers, timeout=timeout) as response:
            assert response.status in (200, 202), f"HTTP {response.status}: {await response.text()}"
            if "mcp-session-id" in response.headers:
                self.headers["mcp-session-id"] = response.headers["mcp-session-id"]
            text = await response.text()
        if notify:
            return {}
        for line in text.splitlines():
            if line.startswith("data:"):
                return json.loads(line[5:])  # type: ignore[no-any-return]
        return json.loads(text)  # type: ignore[no-any-return]

    async def open(self) -> McpClient:
        info = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "cluster", "version": "1"}}
        await self._post("initialize", info)
        self.headers["mcp-protocol-version"] = "2025-11-25"
        await self._post("notifications/initialized", {}, notify=True)
        return self

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The structured result; `isError` answers included (their `code` says what happened).

        A keep-alive connection the server closed as it was reused (its idle timeout) is tried again on a
        new one, as HTTP clients do; every write here carries an idempotency key, so that is safe anyway.
        """
        for attempt in range(3):
            try:
                reply = await self._post("tools/call", {"name": tool, "arguments": arguments})
                break
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                self.reconnects += 1
                if attempt == 2:
                    raise
        assert "result" in reply, reply
        return reply["result"]["structuredContent"]  # type: ignore[no-any-return]


async def register(client: McpClient, keys: list[str], tally: Tally, attempts: int = 30) -> None:
    for key in keys:
        for _ in range(attempts):
            out = await client.call("register_session", {"sessionKey": key, "agentFrom": "a", "idempotencyKey": key})
            if out["success"]:
                break
            assert out["code"] == "UNAVAILABLE", out
            tally.unavailable += 1
            tally.retries += 1
        else:
            raise AssertionError(f"{key} could not be registered")


class Feed:
    """The contents still to write, shared by every lane: `total` of them, or until `stop()` once `more` are written."""

    def __init__(self, name: str, total: int | None = None) -> None:
        self.name, self.total, self.issued, self.stop_at = name, total, 0, total

    def next(self) -> str | None:
        if self.stop_at is not None and self.issued >= self.stop_at:
            return None
        self.issued += 1
        return f"{self.name}-{self.issued}"

    def stop(self, more: int) -> None:
        """End the feed `more` contents from now."""
        self.stop_at = self.issued + more


async def mcp_writer(client: McpClient, keys: list[str], feed: Feed, tally: Tally, attempts: int = 12) -> None:
    """update_context for each content, on a session picked by the content; UNAVAILABLE is retried, same key."""
    while (content := feed.next()) is not None:
        key = keys[hash(content) % len(keys)]
        args = {"sessionKey": key, "contextType": "message", "content": content, "idempotencyKey": content}
        for attempt in range(attempts):
            if attempt:
                tally.retries += 1
            out = await client.call("update_context", args)
            if out["success"]:
                tally.acked[content] = (key, out["contextEntry"]["sequenceNumber"])
                break
            assert out["code"] == "UNAVAILABLE", out  # nothing else may come of a valid append
            tally.unavailable += 1
            await asyncio.sleep(0.2)
        else:
            tally.gave_up += 1


async def platform_writer(
    producer: AIOKafkaProducer, topics: Topics, keys: list[str], feed: Feed, tally: Tally
) -> None:
    """Command records straight to the commands topic (acks=all, idempotent); a failed send is sent again."""
    while (content := feed.next()) is not None:
        key = keys[hash(content) % len(keys)]
        command = AppendContext(session_key=key, context_type="message", content=content)
        record = encode_command(CommandRecord(command_id=f"pf-{content}", command=command))
        for attempt in range(12):
            if attempt:
                tally.retries += 1
            try:
                await producer.send_and_wait(topics.commands, record, key=key.encode())
            except KafkaError:
                tally.unavailable += 1
                await asyncio.sleep(0.2)
                continue
            tally.platform.add(content)
            break
        else:
            tally.gave_up += 1


# -- processes -----------------------------------------------------------------------------------------


def serve_env(topics: Topics) -> dict[str, str]:
    return {"HANDOFF_KAFKA_TOPIC_PREFIX": topics.prefix, "HANDOFF_KAFKA_PARTITIONS": str(topics.partitions)}


@dataclass
class Deployment:
    """Worker processes and one `handoff serve --kafka` on their own topics of the cluster."""

    cluster: Cluster
    topics: Topics
    workers: list[WorkerProcess]
    served: Served

    def logs(self) -> str:
        parts = [f"--- worker {i} ---\n{w.log()}" for i, w in enumerate(self.workers, 1)]
        return "\n".join([*parts, f"--- serve ---\n{self.served.log()[-6000:]}"])

    def alive(self) -> None:
        assert self.served.proc.poll() is None, f"serve --kafka died\n{self.logs()}"


SERVE_DEADLINE = 180.0  # serve --kafka is ready once every partition has a ready worker: slow on a loaded box


def start_serve(root: Path, bootstrap: str, topics: Topics, workers: tuple[Path, ...] = ()) -> Served:
    """`handoff serve --kafka --port 0`, waited for until /readyz answers 200 (or `SERVE_DEADLINE` passes).

    If it never is, the failure shows what /readyz last said and the tail of each worker's log (`workers`).
    """
    data_dir, log_path = root / "serve", root / "serve.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*handoff_command(), "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir),
             "--kafka", bootstrap],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**child_env(), **serve_env(topics)},
        )  # fmt: skip
    served = Served(proc, data_dir, log_path)

    def ready() -> bool:
        assert proc.poll() is None, f"serve --kafka exited before it was ready\n{served.log()}"
        info = read_engine_file(data_dir)
        if not info or info.get("pid") != proc.pid or not info.get("url"):
            return False
        served.url = base_url(str(info["url"]))
        return http_get(served.url + "/readyz", timeout=2)[0] == 200

    def why() -> str:
        said = http_get(served.url + "/readyz", timeout=2) if served.url else (0, "")
        tails = [f"--- {path.name} (last 40 lines)\n" + "\n".join(_tail(path, 40)) for path in workers]
        return "\n".join([served.log(), f"--- /readyz: {said[0]} {said[1][:2000]}", *tails])

    try:
        wait_for(ready, SERVE_DEADLINE, "serve --kafka to be ready", why)
    except BaseException:
        served.kill()
        raise
    return served


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return [f"(unreadable: {exc})"]


@contextmanager
def running_deployment(cluster: Cluster, topics: Topics, root: Path, workers: int = 2) -> Iterator[Deployment]:
    procs = [WorkerProcess(cluster.bootstrap, topics, root / f"w{i}", root / f"w{i}.log") for i in range(workers)]
    for w in procs:
        w.start()
    try:
        served = start_serve(root, cluster.bootstrap, topics, tuple(root / f"w{i}.log" for i in range(workers)))
        try:
            yield Deployment(cluster, topics, procs, served)
        finally:
            served.stop()
    finally:
        for w in procs:
            w.stop()


Disruption = Callable[[Tally, list[Feed]], Awaitable[Any]]


async def run_load(dep: Deployment, tally: Tally, disruption: Disruption, *, total: int | None, sessions: int = 100,
                   clients: int = 3, lanes: int = 6) -> Any:  # fmt: skip
    """`clients` MCP clients (each `lanes` sessions at once) and one platform (`lanes` // 3 records at once) write
    `total` appends (3:1) over `sessions` sessions while `disruption` runs; with `total` None they write until
    the disruption stops the feeds.
    """
    keys = [f"s{i}-{uuid.uuid4().hex[:6]}" for i in range(sessions)]
    mcp_feed = Feed("m", None if total is None else total * 3 // 4)
    platform_feed = Feed("p", None if total is None else total - total * 3 // 4)
    producer = AIOKafkaProducer(bootstrap_servers=dep.cluster.bootstrap, enable_idempotence=True, acks="all",
                                request_timeout_ms=10_000)  # fmt: skip
    await producer.start()
    try:
        async with aiohttp.ClientSession() as http:
            mcp = [await McpClient(http, dep.served.mcp_url).open() for _ in range(clients * lanes)]
            await asyncio.gather(*(register(c, keys[i :: len(mcp)], tally) for i, c in enumerate(mcp)))
            tally.started = time.monotonic()
            writers = [mcp_writer(c, keys, mcp_feed, tally) for c in mcp]
            writers += [platform_writer(producer, dep.topics, keys, platform_feed, tally) for _ in range(lanes // 3)]
            load = asyncio.gather(*writers)
            try:
                outcome = await disruption(tally, [mcp_feed, platform_feed])
                async with asyncio.timeout(600):
                    await load
            finally:
                load.cancel()
    finally:
        await producer.stop()
    return outcome


def internal_and(topics: Topics) -> list[str]:
    """The deployment's topics and Kafka's own (offsets, transaction state): what must be back in sync."""
    return [spec.name for spec in topics.specs()] + ["__consumer_offsets", "__transaction_state"]


def verify_kafka(bootstrap: str, topics: Topics) -> subprocess.CompletedProcess[str]:
    """`handoff verify --kafka` as an operator runs it."""
    return subprocess.run(
        [*handoff_command(), "verify", "--kafka", bootstrap, "--topic-prefix", topics.prefix],
        capture_output=True, text=True, timeout=300, env=child_env(), cwd=REPO,
    )  # fmt: skip


def new_topics(name: str, partitions: int = 6) -> Topics:
    return Topics(f"{name}{uuid.uuid4().hex[:6]}", partitions)


# -- the log's checks ------------------------------------------------------------------------------------


async def check_log(bootstrap: str, topics: Topics, tally: Tally) -> dict[str, int]:
    """Every acknowledged write once at its acknowledged place; no event or command twice; no chain forked."""
    events: list[Any] = []

    async def platform_decided() -> bool:  # platform records are acknowledged by Kafka, decided a moment later
        events[:] = await read_events(bootstrap, topics)
        decided = {env.event.content for _, _, env, _ in events if isinstance(env.event, ContextAppended)}
        return tally.platform <= decided

    await until(platform_decided, 120, "every acknowledged platform record to be decided")
    by_session: dict[str, list[Any]] = defaultdict(list)
    for _, _, env, _ in sorted(events, key=lambda e: (e[0], e[1])):
        by_session[env.session_key].append(env)
    event_ids = Counter(env.event_id for _, _, env, _ in events)
    assert [e for e, n in event_ids.items() if n > 1] == [], "an event was appended twice"
    command_ids = Counter(h["commandId"] for _, _, _, h in events if "commandId" in h)
    assert [c for c, n in command_ids.items() if n > 1] == [], "a command was decided twice"
    seen: dict[str, tuple[str, int]] = {}
    for key, stream in by_session.items():
        assert [e.version for e in stream] == list(range(1, len(stream) + 1)), f"versions of {key}"
        prev = GENESIS_HASH
        for env in stream:
            assert env.prev_hash == prev, f"the hash chain of {key} forks at version {env.version}"
            prev = env.hash
            if isinstance(env.event, ContextAppended):
                assert env.event.content not in seen, f"{env.event.content} appended twice"
                seen[env.event.content] = (key, env.event.sequence_number)
    for content, where in tally.acked.items():
        assert seen.get(content) == where, f"acknowledged {content} at {where}, the log has {seen.get(content)}"
    missing = [c for c in tally.platform if c not in seen]
    assert missing == [], f"{len(missing)} acknowledged platform records were never decided, e.g. {missing[:3]}"
    return {"events": len(events), "sessions": len(by_session)}
