"""Serving MCP for `handoff serve`: over streamable HTTP or over stdio, on the dependencies it is given.

The objects it serves (the embedded engine or the Kafka adapter, as `Deps`) are built by the
composition root, `handoff.bootstrap.serve`; this module opens no store and no Kafka client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import IO

from mcp.server.lowlevel.server import Server
from starlette.types import ASGIApp

from handoff.config import DataDir, Env, try_exclusive, tune_gc_for_serving
from handoff.hardenoptions import DEFAULTS, Hardening
from handoff.mcp import http, launch, localtrust
from handoff.mcp.auth import Auth
from handoff.mcp.deps import Deps
from handoff.mcp.server import build_server

log = logging.getLogger("handoff")


def _idle_policy(data: DataDir, activity: http.Activity, idle_exit: float) -> Callable[[], Awaitable[bool]]:
    held: list[IO[str]] = []  # the exclusive client lock, kept until the process ends

    async def should_stop() -> bool:
        if activity.idle_for() < idle_exit:
            return False
        lock = try_exclusive(data.clients_lock)
        if lock is None:
            return False
        held.append(lock)
        log.info("exiting after being idle", extra={"idleSeconds": idle_exit})
        return True

    return should_stop


async def serve_http(
    backend: AbstractAsyncContextManager[Deps],
    data: DataDir,
    ns: argparse.Namespace,
    env: Env,
    auth: Auth | None = None,
    hardening: Hardening = DEFAULTS,
) -> None:
    """Serve MCP over HTTP at ``--host``/``--port`` until stopped (or idle for ``--idle-exit``)."""
    tokens = auth.lifespan if auth is not None and auth.lifespan is not None else contextlib.nullcontext()
    async with backend as deps, tokens:
        activity = http.Activity()
        sock = http.bind(ns.host, ns.port)
        app: ASGIApp = http.build_app(
            build_server(deps),
            deps,
            activity,
            ns.host,
            fast_path=env.fast_path,
            auth=auth,
            url=http.url_of(sock),
            allowed_hosts=ns.allowed_host,
            hardening=hardening,
        )
        if ns.local_secret:
            app = localtrust.guard(app, localtrust.read_secret(data.secret))
        tune_gc_for_serving()

        def started(url: str) -> None:
            launch.advertise(data, url)
            where = {"url": url, "dataDir": str(data.root), "pid": os.getpid(), "fastPath": env.fast_path}
            where["auth"] = "none" if auth is None else type(auth.verifier).__name__
            log.info("serving MCP over HTTP", extra=where)

        idle = None if ns.idle_exit is None else _idle_policy(data, activity, ns.idle_exit)
        try:
            await http.serve(
                app, sock, on_started=started, should_stop=idle, coalesce=env.fast_path, hardening=hardening
            )
        finally:
            launch.withdraw(data)
    log.info("stopped")


async def _stdio_session(server: Server[Deps]) -> None:
    from mcp.server.stdio import stdio_server  # takes over fds 0 and 1 while it runs

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def serve_stdio(backend: AbstractAsyncContextManager[Deps], close: Callable[[], None]) -> None:
    """Serve MCP over stdin/stdout until stdin closes or a signal comes; `close` releases the store."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    async with backend as deps:
        log.info("serving MCP over stdio")
        serving = asyncio.create_task(_stdio_session(build_server(deps)))
        waiter = asyncio.create_task(signalled.wait())
        await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not signalled.is_set():
            return await serving  # stdin closed: the normal end
        log.info("stopping on a signal")
        serving.cancel()
    # The engine has finished its queued writes (or the Kafka clients are closed). The SDK reads stdin
    # in a thread that no cancellation can interrupt, so close the store here and leave without waiting.
    close()
    logging.shutdown()
    os._exit(0)
