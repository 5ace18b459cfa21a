"""Start `handoff serve` and `handoff stdio` as a user would, and talk to them with the official MCP client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPDeprecationWarning

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
MODES = ("auto", "legacy")
START_DEADLINE = 30.0
STOP_DEADLINE = 15.0


def handoff_command() -> list[str]:
    """The console script installed next to this interpreter, else `python -m handoff`."""
    script = Path(sys.executable).with_name("handoff")
    return [str(script)] if script.exists() else [sys.executable, "-m", "handoff"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HANDOFF_LOG_LEVEL", "INFO")
    env.pop("HANDOFF_KAFKA_BOOTSTRAP", None)
    return env


def wait_for(condition: Callable[[], Any], deadline: float, what: str, on_fail: Callable[[], str] = str) -> Any:
    """Poll `condition` until it is truthy or `deadline` seconds pass; return its value."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}\n{on_fail()}")
        time.sleep(0.05)


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, str]:
    """GET a URL; (status, body). Connection errors give status 0."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        body = error.read().decode("utf-8", "replace")
        error.close()
        return error.code, body
    except OSError:
        return 0, ""


def read_engine_file(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / "engine.json").read_text())
    except (OSError, ValueError):
        return None


def base_url(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/mcp")] if url.endswith("/mcp") else url


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_pid(pid: int) -> None:
    """SIGTERM a process we did not spawn directly (the auto-started engine); SIGKILL it if it lingers."""
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + STOP_DEADLINE
    while pid_alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_for(lambda: not pid_alive(pid), STOP_DEADLINE, f"pid {pid} to die after SIGKILL")


def stop_engine_of(data_dir: Path) -> None:
    """Stop the engine that `handoff stdio` auto-started for this data dir, if any."""
    info = read_engine_file(data_dir)
    if info and isinstance(info.get("pid"), int) and info["pid"] != os.getpid():
        stop_pid(info["pid"])


@dataclass
class Served:
    """A running `handoff serve` process."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    url: str = ""

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_DEADLINE)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_DEADLINE)


def start_server(
    data_dir: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None, deadline: float = START_DEADLINE
) -> Served:
    """Start `handoff serve --port 0` (with more environment, if given) and wait until /readyz answers 200."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*handoff_command(), "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir), *extra],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**child_env(), **(env or {})},
        )
    served = Served(proc, data_dir, log_path)

    def describe() -> str:
        return f"exit code: {proc.poll()}\n--- server output ---\n{served.log()}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"handoff serve exited before it was ready\n{describe()}")
        info = read_engine_file(data_dir)
        if not info or info.get("pid") != proc.pid or not info.get("url"):
            return False
        served.url = base_url(str(info["url"]))
        return http_get(served.url + "/readyz", timeout=2)[0] == 200

    try:
        wait_for(ready, deadline, "handoff serve to be ready (engine.json with its pid, /readyz 200)", describe)
    except BaseException:
        served.kill()
        raise
    return served


@contextmanager
def running_server(data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    served = start_server(data_dir, log_path, env=env)
    try:
        yield served
    finally:
        served.stop()


@dataclass
class Inbox:
    """Notifications a client received (for legacy-era subscriptions)."""

    updated: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    async def __call__(self, message: Any) -> None:
        if isinstance(message, BaseException):
            self.errors.append(message)
        elif isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append(str(message.params.uri))


@asynccontextmanager
async def http_client(url: str, mode: str = "auto", inbox: Inbox | None = None) -> AsyncIterator[Client]:
    """An official MCP client over streamable HTTP, without the response cache (tests re-read changing data)."""
    async with Client(url, mode=mode, cache=None, message_handler=inbox) as client:
        yield client


def stdio_params(data_dir: Path) -> StdioServerParameters:
    command = handoff_command()
    return StdioServerParameters(
        command=command[0], args=[*command[1:], "stdio", "--data-dir", str(data_dir)], env=child_env()
    )


@asynccontextmanager
async def stdio_mcp_client(
    data_dir: Path, log_path: Path, mode: str = "auto", inbox: Inbox | None = None
) -> AsyncIterator[Client]:
    """An official MCP client that spawns `handoff stdio --data-dir DIR`; its stderr goes to `log_path`."""
    with open(log_path, "a") as errlog:
        async with Client(
            stdio_client(stdio_params(data_dir), errlog=errlog), mode=mode, cache=None, message_handler=inbox
        ) as client:
            yield client


def expected_protocol(mode: str) -> str:
    return MODERN if mode == "auto" else LEGACY


async def ok(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; its structured content."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool}({_short(args)}) failed: {result.structured_content or result.content}"
    content = result.structured_content
    assert isinstance(content, dict), f"{tool} returned no structured content: {result.content}"
    assert content.get("success") is True, content
    return content


async def refused(client: Client, tool: str, args: dict[str, Any], code: str) -> dict[str, Any]:
    """Call a tool that must fail with `code` (isError + structuredContent.code); its structured content."""
    result = await client.call_tool(tool, args)
    content = result.structured_content
    assert result.is_error, f"{tool}({_short(args)}) should fail with {code}, got success: {content}"
    assert isinstance(content, dict), f"{tool} error has no structured content: {result.content}"
    assert content.get("success") is False, content
    assert content.get("code") == code, f"{tool}({_short(args)}): expected {code}, got {content}"
    assert isinstance(content.get("error"), str) and content["error"], content
    return content


def _short(args: dict[str, Any]) -> str:
    text = json.dumps(args, default=str)
    return text if len(text) < 300 else text[:300] + "…"


async def subscribe_legacy(client: Client, uri: str) -> None:
    # The SDK marks resources/subscribe deprecated because 2026-07-28 removed it; handshake-era clients
    # still use it, and that is exactly what this call exercises.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.session.subscribe_resource(uri)


async def wait_until(condition: Callable[[], Any], deadline: float, what: str) -> None:
    """Async poll with a deadline, for conditions fed by background tasks."""
    with anyio.fail_after(deadline):
        while not condition():
            await anyio.sleep(0.02)
    assert condition(), what


async def expect_update(
    client: Client, inbox: Inbox, uri: str, write: Callable[[], Any], deadline: float = 10.0
) -> None:
    """Subscribe `client` to `uri` (the era's way), run `write`, and wait for notifications/resources/updated."""
    if client.protocol_version == MODERN:
        async with client.listen(resource_subscriptions=[uri]) as sub:
            await write()
            with anyio.fail_after(deadline):
                async for event in sub:
                    if getattr(event, "uri", None) == uri:
                        return
            raise AssertionError(f"subscription to {uri} ended without an update")
    await subscribe_legacy(client, uri)
    await write()
    await wait_until(lambda: uri in inbox.updated, deadline, f"notifications/resources/updated for {uri}")


async def snapshot(client: Client, key: str) -> tuple[int, list[dict[str, Any]]]:
    """A session's version and all its context entries, to prove that a refused call wrote nothing."""
    session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
    entries = (await ok(client, "get_context", {"sessionKey": key, "limit": 1000}))["entries"]
    return session["version"], entries


async def new_session(client: Client, key: str, agent: str = "agent-a", updates: int = 0) -> dict[str, Any]:
    """Register a session and append `updates` message entries; the last session view."""
    session = (await ok(client, "register_session", {"sessionKey": key, "agentFrom": agent}))["session"]
    for i in range(updates):
        body = {"sessionKey": key, "contextType": "message", "content": f"note {i}"}
        session = (await ok(client, "update_context", body))["session"]
    return session


async def new_handoff(
    client: Client, key: str, source: str = "agent-a", target: str = "agent-b", **extra: Any
) -> dict[str, Any]:
    """Register a session with one entry and request a handoff of it; the handoff view."""
    await new_session(client, key, source, updates=1)
    args = {"sessionKey": key, "targetAgent": target, **extra}
    return (await ok(client, "request_handoff", args))["handoff"]
