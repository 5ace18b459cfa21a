"""Health and MCP logging of an in-process server (CONTRACT §10): /healthz, handoff://health, logging/setLevel."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
import uvicorn
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from starlette.types import ASGIApp

from handoff.config import DataDir
from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.health import Health
from handoff.kernel.commands import RegisterSession
from handoff.kernel.errors import Unavailable
from handoff.kernel.types import Limits
from handoff.mcp import http, launch, localtrust
from handoff.mcp.clientlog import ClientLog
from handoff.mcp.deps import Deps
from handoff.mcp.server import build_server
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from handoff.observation import observe_engine
from handoff.storage.kv import RocksKeyValue

pytestmark = pytest.mark.anyio


class _FailingSync:
    """RocksDB's own log sync until told to fail."""

    def __init__(self, kv: RocksKeyValue) -> None:
        self.kv = kv
        self.fail = False

    def __call__(self) -> None:
        if self.fail:
            raise OSError("disk gone")
        self.kv.sync_log()


@dataclass
class _Server:
    url: str
    engine: Engine
    sync: _FailingSync
    health: Health


@asynccontextmanager
async def _serving(
    tmp_path: Path, environ: dict[str, str] | None = None, secret: str | None = None
) -> AsyncIterator[_Server]:
    kv = RocksKeyValue(str(tmp_path / "db"))
    sync = _FailingSync(kv)
    engine = Engine(kv, limits=Limits(), sync_log=sync)
    service = EmbeddedService(engine)
    metrics = Metrics()
    health = observe_engine(metrics, engine, tmp_path, environ or {})
    notifier, limits = Notifier(), engine.limits
    deps = Deps(commands=service, reads=service, limits=limits, metrics=metrics, notifier=notifier, health=health)
    await engine.start()
    app: ASGIApp = http.build_app(build_server(deps), deps, http.Activity(), "127.0.0.1")
    if secret is not None:  # as `handoff stdio` starts its engine: --local-secret
        app = localtrust.guard(app, secret)
    sock = http.bind("127.0.0.1", 0)
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, http="httptools", ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    try:
        yield _Server(http.url_of(sock), engine, sync, health)
    finally:
        server.should_exit = True
        await task
        await engine.stop()
        kv.close()


async def _healthz(server: _Server) -> tuple[int, dict[str, Any]]:
    async with httpx2.AsyncClient(timeout=10) as client:
        reply = await client.get(server.url.removesuffix("/mcp") + "/healthz")
    return reply.status_code, reply.json()


async def test_healthz_reports_each_component_and_answers_200_when_healthy(tmp_path: Path) -> None:
    async with _serving(tmp_path) as server:
        status, body = await _healthz(server)
    assert status == 200
    assert body["status"] == "healthy"
    assert set(body["components"]) == {"store", "disk", "logSync", "sweeper"}
    assert body["components"]["sweeper"]["status"] == "absent"
    assert body["components"]["disk"]["freeBytes"] > 0


async def test_a_nearly_full_disk_degrades_health_but_keeps_the_liveness_answer(tmp_path: Path) -> None:
    async with _serving(tmp_path, {"HANDOFF_DISK_MIN_FREE_PERCENT": "100"}) as server:
        status, body = await _healthz(server)
    assert status == 200
    assert body["status"] == "degraded"
    assert body["components"]["disk"]["status"] == "degraded"


async def test_a_failed_log_sync_makes_the_server_unhealthy_with_503(tmp_path: Path) -> None:
    async with _serving(tmp_path) as server:
        server.sync.fail = True
        with pytest.raises(Unavailable):
            await server.engine.submit(RegisterSession(session_key="s", agent_from="a"))
        status, body = await _healthz(server)
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["components"]["logSync"]["status"] == "unhealthy"
    assert "disk gone" in body["components"]["logSync"]["error"]


async def test_an_unhealthy_engine_is_still_the_live_engine_of_its_data_dir(tmp_path: Path) -> None:
    # `handoff stdio` must relay to it (and get UNAVAILABLE), not try to start a second engine on a locked store
    data = DataDir(tmp_path / "dir")
    localtrust.secure_data_dir(data.root)
    async with _serving(tmp_path, secret=localtrust.read_secret(data.secret)) as server:
        server.sync.fail = True
        with pytest.raises(Unavailable):
            await server.engine.submit(RegisterSession(session_key="s", agent_from="a"))
        data.engine_json.write_text(json.dumps({"url": server.url, "pid": os.getpid()}))
        assert not server.engine.running
        assert await asyncio.to_thread(launch.live_engine, data) == server.url


async def test_the_health_resource_answers_what_healthz_answers(tmp_path: Path) -> None:
    async with _serving(tmp_path) as server, Client(server.url, cache=None) as client:
        listed = [str(r.uri) for r in (await client.list_resources()).resources]
        result = await client.read_resource("handoff://health")
        _, healthz = await _healthz(server)
    assert "handoff://health" in listed
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    body = json.loads(content.text)
    assert body["status"] == healthz["status"] == "healthy"
    assert set(body["components"]) == set(healthz["components"])


@dataclass
class _Logs:
    received: list[types.LoggingMessageNotificationParams]

    async def __call__(self, params: types.LoggingMessageNotificationParams) -> None:
        self.received.append(params)

    def messages(self) -> list[str]:
        return [str(p.data["message"]) for p in self.received if isinstance(p.data, dict)]


@contextmanager
def _logging_restored() -> Iterator[None]:
    """The handler and levels that `logging/setLevel` installs are process-wide: put them back."""
    names = ("handoff", "streams", "projections")
    levels = {n: logging.getLogger(n).level for n in names}
    root = logging.getLogger()
    handlers = list(root.handlers)
    handler_levels = {h: h.level for h in handlers}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        for h, level in handler_levels.items():
            h.setLevel(level)
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


async def _until(condition: Callable[[], bool], what: str) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.02)
    assert condition(), what


async def test_set_level_sends_the_servers_own_log_lines_at_or_above_the_level(tmp_path: Path) -> None:
    logs = _Logs([])
    log = logging.getLogger("handoff.test")
    before = logging.getLogger("handoff").level
    with _logging_restored():
        async with _serving(tmp_path) as server, Client(
            server.url, mode="legacy", cache=None, logging_callback=logs
        ) as client:
            assert client.server_capabilities.logging is not None
            with warnings.catch_warnings():  # the SDK marks the method deprecated: 2026-07-28 removed it
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                assert await client.set_logging_level("warning") == types.EmptyResult()
            log.info("below the level")
            log.warning("at the level", extra={"sessionKey": "s1"})
            logging.getLogger("mcp.server.test").error("not the server's own logger")
            await _until(lambda: "at the level" in logs.messages(), "the warning to arrive")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.set_logging_level("debug")
            log.debug("now wanted")
            await _until(lambda: "now wanted" in logs.messages(), "the debug line to arrive")
        # the connection is gone: nothing of it stays in the process's logging
        assert not any(isinstance(h, ClientLog) for h in logging.getLogger().handlers)
        assert logging.getLogger("handoff").level == before
    assert logs.messages() == ["at the level", "now wanted"]
    first = logs.received[0]
    assert first.level == "warning"
    assert first.logger == "handoff.test"
    assert isinstance(first.data, dict) and first.data["sessionKey"] == "s1"


async def test_set_level_never_sends_log_lines_to_a_client_that_did_not_ask(tmp_path: Path) -> None:
    asked, silent = _Logs([]), _Logs([])
    log = logging.getLogger("handoff.test")
    with _logging_restored():
        async with _serving(tmp_path) as server, Client(
            server.url, mode="legacy", cache=None, logging_callback=asked
        ) as first, Client(server.url, mode="legacy", cache=None, logging_callback=silent) as second:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await first.set_logging_level("info")
            log.warning("for the one that asked")
            await _until(lambda: "for the one that asked" in asked.messages(), "the line to arrive")
            await second.list_tools()  # a round trip on the second connection after the line was sent
    assert silent.received == []
