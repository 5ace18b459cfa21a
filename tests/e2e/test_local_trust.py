"""Another account on the same machine: it cannot read the data dir, use the shared engine, or pose as it."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.harness import handoff_command, pid_alive, read_engine_file, stop_engine_of, wait_for

from e2e.test_stdio import RawStdio

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # the test's own interpreter lives under /root, which nobody may enter


def _as_nobody(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run([*setpriv, *argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home() -> Iterator[Path]:
    """A data dir whose parent every account may enter, so that only the data dir's own modes protect it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not Path(SYSTEM_PYTHON).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("these tests need root, setpriv and /usr/bin/python3 to act as a second account")
        pytest.skip("needs root, setpriv and /usr/bin/python3 to act as a second account (uid 65534)")
    parent = Path(tempfile.mkdtemp(prefix="handoff-trust-"))
    parent.chmod(0o755)
    try:
        yield parent / "data"
    finally:
        stop_engine_of(parent / "data")
        shutil.rmtree(parent, ignore_errors=True)


def _hello(raw: RawStdio) -> None:
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    raw.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
    assert raw.response(1)["result"]["protocolVersion"] == "2025-11-25"
    raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


def _register(raw: RawStdio, request_id: int, key: str) -> dict[str, object]:
    args = {"sessionKey": key, "agentFrom": "alice"}
    params = {"name": "register_session", "arguments": args}
    raw.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
    result: dict[str, object] = raw.response(request_id)["result"]
    return result


def test_the_data_dir_and_its_files_are_the_owners_alone(home: Path, tmp_path: Path):
    raw = RawStdio(home, tmp_path / "stdio.log")
    try:
        _hello(raw)
        _register(raw, 2, "private-1")
    finally:
        raw.close()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in home.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for target in (home / "engine.json", home / "engine.secret", home / "db" / "CURRENT"):
        denied = _as_nobody("cat", str(target))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, (target, denied)
    assert _as_nobody("ls", str(home)).returncode != 0


def test_another_account_cannot_use_the_shared_engine(home: Path, tmp_path: Path):
    raw = RawStdio(home, tmp_path / "stdio.log")
    try:
        _hello(raw)
        engine = read_engine_file(home)
        assert engine is not None
        probe = textwrap.dedent(f"""
            import urllib.request, urllib.error
            body = b'{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{}}}}'
            req = urllib.request.Request({engine["url"]!r}, data=body, method="POST",
                headers={{"content-type": "application/json", "accept": "application/json, text/event-stream"}})
            try:
                print(urllib.request.urlopen(req, timeout=5).status)
            except urllib.error.HTTPError as exc:
                print(exc.code)
        """)
        assert _as_nobody(SYSTEM_PYTHON, "-c", probe).stdout.strip() == "401"
    finally:
        raw.close()


IMPOSTOR = """
import http.server, json, sys
port, pid, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
class Impostor(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        with open(log, "a") as out:
            out.write(self.command + " " + self.path + "\\n")
        body = json.dumps({"pid": pid, "status": "ok", "proof": "0" * 64}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = _answer
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Impostor)
print("listening", flush=True)
server.serve_forever()
"""


def test_another_account_cannot_pose_as_an_engine_killed_with_sigkill(home: Path, tmp_path: Path):
    raw = RawStdio(home, tmp_path / "stdio.log")
    try:
        _hello(raw)
    finally:
        raw.close()
    engine = read_engine_file(home)
    assert engine is not None
    os.kill(engine["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(engine["pid"]), 15, "the engine to die")
    assert read_engine_file(home) == engine  # stale: it names a port anyone may now take
    port = int(engine["url"].rsplit(":", 1)[1].split("/")[0])
    requests = Path(tempfile.mkdtemp(prefix="impostor-")) / "requests.log"
    requests.parent.chmod(0o777)
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    impostor = subprocess.Popen(
        [*setpriv, SYSTEM_PYTHON, "-c", IMPOSTOR, str(port), str(engine["pid"]), str(requests)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert impostor.stdout is not None and impostor.stdout.readline().strip() == "listening"
        raw = RawStdio(home, tmp_path / "stdio-2.log")
        try:
            _hello(raw)
            result = _register(raw, 2, "after-the-kill")
            assert result.get("structuredContent", {}).get("success") is True, result  # type: ignore[union-attr]
        finally:
            raw.close()
        fresh = read_engine_file(home)
        assert fresh is not None and fresh["pid"] != engine["pid"] and fresh["url"] != engine["url"]
        seen = requests.read_text().splitlines() if requests.exists() else []
        assert all(line.startswith("GET /local-proof?challenge=") for line in seen), seen  # asked, never trusted
    finally:
        impostor.send_signal(signal.SIGTERM)
        impostor.communicate(timeout=10)
        shutil.rmtree(requests.parent, ignore_errors=True)


def test_a_stuck_engine_lock_gives_a_clear_error_instead_of_a_hang(home: Path, tmp_path: Path):
    import fcntl

    home.mkdir(parents=True, mode=0o700)
    with open(home / "engine.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        env = {**os.environ, "HANDOFF_LOCK_DEADLINE": "1"}
        done = subprocess.run(
            [*handoff_command(), "stdio", "--data-dir", str(home)], input="", capture_output=True, text=True,
            timeout=60, env=env,
        )  # fmt: skip
    assert done.returncode == 1
    assert "engine.lock has been locked by another process" in done.stderr, done.stderr
