"""`QueryEndpoint`: the worker's HTTP endpoint: the query API of `streams.queryapi` and ``/metrics``, on one socket."""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web

from handoff.metrics import CONTENT_TYPE
from streams.metrics import WorkerMetrics
from streams.queryapi import Owner, QueryApi


class QueryEndpoint:
    """Serves a worker's reads and metrics over HTTP while the worker runs."""

    def __init__(
        self, owner: Owner, metrics: WorkerMetrics, routes: Callable[[web.Application], None] | None = None
    ) -> None:
        self.owner = owner
        self.metrics = metrics
        self.routes = routes  # more routes, e.g. the worker's jobs (streams.jobs)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int, advertised_url: str | None) -> str:
        """Listen on `host`:`port` (0: a free port); the URL other processes reach it at."""
        app = QueryApi(self.owner, self.metrics.store.read.observe).app()
        app.router.add_get("/metrics", self._metrics)
        if self.routes is not None:
            self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        site = web.SockSite(self._runner, sock)
        await site.start()
        return advertised_url or f"http://{host}:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
