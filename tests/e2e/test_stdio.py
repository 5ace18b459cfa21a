"""`handoff stdio` as hosts launch it: several processes share one engine, and stdout carries only JSON-RPC."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from integration.harness import (
    MODES,
    child_env,
    handoff_command,
    ok,
    pid_alive,
    read_engine_file,
    snapshot,
    stdio_mcp_client,
    stop_engine_of,
    wait_for,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_a_session_handed_off_in_one_stdio_process_is_accepted_and_extended_in_another(
    stdio_dir: Path, tmp_path: Path, key: str, mode: str
) -> None:
    log = tmp_path / "stdio.log"
    async with stdio_mcp_client(stdio_dir, log, mode) as first:
        await ok(first, "register_session", {"sessionKey": key, "agentFrom": "host-one"})
        await ok(first, "update_context", {"sessionKey": key, "contextType": "message", "content": "from one"})
        hid = (await ok(first, "request_handoff", {"sessionKey": key, "targetAgent": "host-two"}))["handoff"][
            "handoffId"
        ]
        async with stdio_mcp_client(stdio_dir, log, mode) as second:
            seen = (await ok(second, "get_session", {"sessionKey": key}))["session"]
            assert seen["version"] == 3
            inbox = await ok(second, "list_handoffs", {"targetAgent": "host-two", "status": "pending"})
            assert [h["handoffId"] for h in inbox["handoffs"]] == [hid]
            await ok(second, "accept_handoff", {"handoffId": hid, "agent": "host-two"})
            body = {"sessionKey": key, "contextType": "message", "content": "from two", "agent": "host-two"}
            appended = await ok(second, "update_context", body)
            assert appended["contextEntry"]["sequenceNumber"] == 4
        version, entries = await snapshot(first, key)
        assert version == 5
        assert [e["content"] for e in entries][-1] == "from two"
        assert (await ok(first, "get_handoff", {"handoffId": hid}))["handoff"]["status"] == "accepted"


async def test_forty_interleaved_writes_from_two_stdio_processes_get_gap_free_numbers(
    stdio_dir: Path, tmp_path: Path, key: str
) -> None:
    log = tmp_path / "stdio.log"
    numbers: list[int] = []
    async with stdio_mcp_client(stdio_dir, log) as one, stdio_mcp_client(stdio_dir, log, "legacy") as two:
        await ok(one, "register_session", {"sessionKey": key, "agentFrom": "a"})

        async def writer(client: Any, name: str) -> None:
            for i in range(20):
                body = {"sessionKey": key, "contextType": "message", "content": f"{name}-{i}"}
                numbers.append((await ok(client, "update_context", body))["contextEntry"]["sequenceNumber"])

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for client, name in ((one, "one"), (two, "two")):
                    for lane in range(2):
                        tg.start_soon(writer, client, f"{name}{lane}")
        version, entries = await snapshot(two, key)
    assert sorted(numbers) == list(range(2, 82))
    assert version == 81
    assert [e["sequenceNumber"] for e in entries] == list(range(1, 82))


async def test_stdio_processes_on_one_data_dir_share_a_single_engine(stdio_dir: Path, tmp_path: Path, key: str) -> None:
    log = tmp_path / "stdio.log"
    async with stdio_mcp_client(stdio_dir, log) as one:
        await ok(one, "register_session", {"sessionKey": key, "agentFrom": "a"})
        engine = read_engine_file(stdio_dir)
        assert engine and pid_alive(engine["pid"]), f"no engine.json with a live pid in {stdio_dir}"
        async with stdio_mcp_client(stdio_dir, log) as two:
            await ok(two, "get_session", {"sessionKey": key})
            assert read_engine_file(stdio_dir) == engine


async def test_three_stdio_processes_started_at_once_on_a_fresh_data_dir_share_one_engine(
    stdio_dir: Path, tmp_path: Path, uid: str
) -> None:
    log = tmp_path / "stdio.log"
    keys = [f"race-{uid}-{i}" for i in range(3)]
    seen: dict[str, list[str]] = {}

    async def host(i: int, ready: anyio.Event, all_written: list[anyio.Event]) -> None:
        async with stdio_mcp_client(stdio_dir, log, MODES[i % 2]) as client:
            await ok(client, "register_session", {"sessionKey": keys[i], "agentFrom": f"host-{i}"})
            ready.set()
            for event in all_written:
                await event.wait()
            listed = await ok(client, "list_sessions", {"limit": 1000})
            seen[keys[i]] = [s["sessionKey"] for s in listed["sessions"]]

    events = [anyio.Event() for _ in keys]
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(host, i, events[i], events)
    for key in keys:
        assert set(seen[key]) >= set(keys), f"{key} sees {seen[key]}"


class RawStdio:
    """`handoff stdio` driven by hand over raw pipes, every stdout line kept."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.log = open(log, "ab")  # closed in close()
        self.proc = subprocess.Popen(
            [*handoff_command(), "stdio", "--data-dir", str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=child_env(),
        )
        self.lines: list[bytes] = []
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                pass

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def response(self, request_id: int, deadline: float = 30.0) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None and self.messages.empty():
                raise AssertionError(f"no response to request {request_id}; stdout so far: {self.lines!r}")
            try:
                message = self.messages.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if message.get("id") == request_id:
                return message

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        self.reader.join(15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


def test_stdio_writes_nothing_but_json_rpc_to_stdout(stdio_dir: Path, tmp_path: Path, key: str) -> None:
    raw = RawStdio(stdio_dir, tmp_path / "stdio.log")
    try:
        raw.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "0"},
                },
            }
        )
        init = raw.response(1)
        assert init["result"]["protocolVersion"] == "2025-11-25"
        raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        raw.send(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "register_session", "arguments": {"sessionKey": key, "agentFrom": "raw"}},
            }
        )
        called = raw.response(2)
        assert called["result"]["structuredContent"]["success"] is True
        raw.send(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "register_session", "arguments": {"sessionKey": key, "agentFrom": "raw"}},
            }
        )
        again = raw.response(3)
        assert again["result"]["isError"] is True
        assert again["result"]["structuredContent"]["code"] == "SESSION_EXISTS"
        raw.send({"jsonrpc": "2.0", "id": 4, "method": "tools/list"})
        assert raw.response(4)["result"]["tools"]
    finally:
        raw.close()
    assert raw.lines, "stdio wrote nothing"
    for line in raw.lines:
        message = json.loads(line)
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", line
        assert ("id" in message and ("result" in message or "error" in message)) or "method" in message, line


def test_stdio_exits_when_its_host_closes_stdin(stdio_dir: Path, tmp_path: Path) -> None:
    raw = RawStdio(stdio_dir, tmp_path / "stdio.log")
    try:
        raw.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            }
        )
        raw.response(1)
        assert raw.proc.stdin is not None
        raw.proc.stdin.close()
        wait_for(lambda: raw.proc.poll() is not None, 15, "handoff stdio to exit after stdin EOF")
    finally:
        raw.close()
    engine = read_engine_file(stdio_dir)
    assert engine and pid_alive(engine["pid"]), "the shared engine should outlive one host's stdio process"
    stop_engine_of(stdio_dir)
    assert not pid_alive(engine["pid"])


@pytest.mark.parametrize("bad_id", [{"an": "object"}, [1, 2], True])
def test_the_relay_answers_a_request_with_an_id_that_is_no_id_and_goes_on(
    stdio_dir: Path, tmp_path: Path, bad_id: Any
) -> None:
    raw = RawStdio(stdio_dir, tmp_path / "stdio.log")
    try:
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
        raw.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
        raw.response(1)
        raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        raw.send({"jsonrpc": "2.0", "id": bad_id, "method": "tools/list"})
        raw.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": bad_id}})
        assert raw.proc.stdin is not None
        raw.proc.stdin.write(b'{"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {"x": "' + b"y" * (17 << 20))
        raw.proc.stdin.write(b'"}}\n')
        raw.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert raw.response(2)["result"]["tools"]
        assert raw.proc.poll() is None
    finally:
        raw.close()
    errors = [m for m in map(json.loads, raw.lines) if "error" in m]
    assert [e["error"]["code"] for e in errors] == [-32600, -32600], errors
    assert all(e["id"] is None for e in errors)
