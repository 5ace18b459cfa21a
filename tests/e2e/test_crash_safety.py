"""SIGKILL the engine under concurrent writers; after a restart every acknowledged write is there, nothing is torn."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from integration.harness import http_client, ok, start_server, wait_for

pytestmark = pytest.mark.slow

WRITER = Path(__file__).with_name("crash_writer.py")
CLIENTS = 8
ACKS_BEFORE_KILL = 150


class Acks:
    """The JSON lines a writer process prints, one per acknowledged write, collected on a thread."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.items: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.items.append(json.loads(line))


async def read_all(client: Any, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
    entries: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = await ok(client, "get_context", {"sessionKey": key, "afterSequence": after, "limit": 1000})
        entries += page["entries"]
        after = page["nextAfterSequence"]
    return session, entries


@pytest.mark.anyio
async def test_every_acknowledged_write_survives_a_sigkill_and_no_command_is_half_applied(
    tmp_path: Path, uid: str
) -> None:
    data = tmp_path / "data"
    log = tmp_path / "server.log"
    served = start_server(data, log)
    writer_log = open(tmp_path / "writer.log", "ab")  # closed in finally
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), served.mcp_url, f"crash-{uid}", str(CLIENTS)],
        stdout=subprocess.PIPE,
        stderr=writer_log,
    )
    try:
        acks = Acks(writer)
        wait_for(
            lambda: len(acks.items) >= ACKS_BEFORE_KILL or writer.poll() is not None,
            60,
            f"{ACKS_BEFORE_KILL} acknowledged writes",
            served.log,
        )
        assert writer.poll() is None, f"the writer stopped early:\n{(tmp_path / 'writer.log').read_text()}"
        served.kill()
        writer.wait(60)
        acks.thread.join(10)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(15)
        if writer.stdout is not None:
            writer.stdout.close()
        writer_log.close()
        served.kill()
    acknowledged = list(acks.items)
    assert len(acknowledged) >= ACKS_BEFORE_KILL

    restarted = start_server(data, log)
    try:
        async with http_client(restarted.mcp_url) as client:
            keys = sorted({a["key"] for a in acknowledged})
            views = {k: await read_all(client, k) for k in keys}
            for ack in acknowledged:
                session, entries = views[ack["key"]]
                if "seq" in ack:
                    by_seq = {e["sequenceNumber"]: e for e in entries}
                    assert ack["seq"] in by_seq, f"acknowledged write lost after SIGKILL: {ack}"
                    assert by_seq[ack["seq"]]["content"] == ack["content"], ack
                else:
                    handoff = (await ok(client, "get_handoff", {"handoffId": ack["handoffId"]}))["handoff"]
                    assert handoff["sessionKey"] == ack["key"]
            for key, (session, entries) in views.items():
                numbers = [e["sequenceNumber"] for e in entries]
                assert numbers == list(range(1, len(entries) + 1)), f"{key}: sequence numbers have gaps"
                # Only register, update_context and request_handoff ran: each adds one event and one entry.
                assert session["version"] == len(entries), f"{key}: version {session['version']} != {len(entries)}"
                handoffs = await ok(client, "list_handoffs", {"sourceAgent": session["agentFrom"], "limit": 1000})
                requests = [e for e in entries if e["contextType"] == "system" and e["sequenceNumber"] > 1]
                assert len([h for h in handoffs["handoffs"] if h["sessionKey"] == key]) == len(requests), key
            # The engine takes writes again, continuing each stream where it stopped.
            for key, (session, _) in views.items():
                more = {"sessionKey": key, "contextType": "message", "content": "after restart"}
                appended = await ok(client, "update_context", more)
                assert appended["session"]["version"] == session["version"] + 1
    finally:
        restarted.stop()
