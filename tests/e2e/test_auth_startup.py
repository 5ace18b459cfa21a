"""How `handoff serve` starts with CONTRACT §7's options: no unauthenticated listening beyond loopback, proxies."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path

from integration.harness import child_env, handoff_command, start_server

from e2e.auth_support import token_cli


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [*handoff_command(), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), *args]
    return subprocess.run(command, capture_output=True, text=True, env={**child_env(), **(env or {})}, timeout=60)


def test_serving_without_auth_beyond_loopback_is_refused_at_start_up(tmp_path: Path) -> None:
    done = serve(tmp_path, "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--auth token" in done.stderr


def test_handoff_auth_none_in_the_environment_is_refused_beyond_loopback_too(tmp_path: Path) -> None:
    done = serve(tmp_path, "--host", "0.0.0.0", env={"HANDOFF_AUTH": "none"})
    assert done.returncode == 2 and "not a loopback address" in done.stderr


def test_jwt_mode_without_a_jwks_url_is_refused(tmp_path: Path) -> None:
    done = serve(tmp_path, "--auth", "jwt")
    assert done.returncode == 2 and "--jwt-jwks-url" in done.stderr


def _initialize(port: int, host_header: str, token: str) -> int:
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/mcp", body=body, headers={
            "Host": host_header, "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {token}",
        })  # fmt: skip
        return conn.getresponse().status
    finally:
        conn.close()


def test_an_allowed_host_is_accepted_behind_a_proxy_and_others_are_not(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = token_cli(data, "create", "--agent", "alice")["token"]
    served = start_server(
        data, tmp_path / "server.log", "--allowed-host", "handoff.example.com", env={"HANDOFF_AUTH": "token"}
    )
    try:
        port = int(served.url.rsplit(":", 1)[1])
        assert _initialize(port, "handoff.example.com", token) == 200
        assert _initialize(port, "evil.example.com", token) == 421
        assert _initialize(port, "handoff.example.com", "wrong") == 401
    finally:
        served.stop()
