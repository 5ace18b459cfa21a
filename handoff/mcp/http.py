"""MCP over streamable HTTP: the Starlette app (/mcp, /healthz, /readyz, /metrics) and its uvicorn loop.

The session manager runs stateful, so 2025-11-25 clients keep a session and the GET stream their
resource notifications arrive on; 2026-07-28 requests bypass sessions by design of the SDK. DNS
rebinding protection admits only loopback Host/Origin headers (plus the configured host).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from handoff.accel import gate
from handoff.hardenoptions import DEFAULTS, Hardening
from handoff.mcp import guard, tools
from handoff.mcp.auth import Auth
from handoff.mcp.deps import Deps
from handoff.metrics import CONTENT_TYPE

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


@dataclass
class Activity:
    """How many /mcp requests are in flight, and since when none has been."""

    clock: Callable[[], float] = time.monotonic
    in_flight: int = 0
    last: float = field(default_factory=time.monotonic)

    def idle_for(self) -> float:
        """Seconds without any /mcp request in flight (0 while one is)."""
        return 0.0 if self.in_flight else self.clock() - self.last

    def started(self) -> None:
        """One more request (an SSE stream counts until it closes)."""
        self.in_flight += 1

    def ended(self) -> None:
        """One request is over."""
        self.in_flight -= 1
        self.last = self.clock()


class _Tracked:
    """The MCP endpoint, counted as activity; the in-flight gauge reads the same count when scraped.

    Counted inline rather than with two context managers (one of them taking the gauge's lock):
    this wraps every call.
    """

    def __init__(self, app: ASGIApp, activity: Activity, deps: Deps) -> None:
        self.app = app
        self.activity = activity
        deps.metrics.in_flight.set_function(lambda: float(activity.in_flight))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.activity.started()
        try:
            await self.app(scope, receive, send)
        finally:
            self.activity.ended()


def host_literal(host: str) -> str:
    """A host as it appears in a Host header or URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def security_settings(host: str, allowed_hosts: Sequence[str] = ()) -> TransportSecuritySettings:
    """Loopback names on any port, the host the server listens on, and `allowed_hosts` (a proxy's names)."""
    names = list(LOOPBACK)
    if host_literal(host) not in names and host not in ("0.0.0.0", "::"):
        names.append(host_literal(host))
    extra = [h for h in allowed_hosts if h not in names]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{n}:*" for n in names] + extra + [f"{h}:*" for h in extra if ":" not in h],
        allowed_origins=[f"{scheme}://{n}:*" for n in names for scheme in ("http", "https")]
        + [f"{scheme}://{h}" for h in extra for scheme in ("http", "https")],
    )


def mcp_endpoint(server: Server[Deps], manager: StreamableHTTPSessionManager, deps: Deps, fast_path: bool) -> ASGIApp:
    """The SDK's /mcp app, behind the fast path (an accelerator) for the hot requests unless it is off."""
    sdk = StreamableHTTPASGIApp(manager)
    if not gate.enabled(gate.MCP_FAST_PATH, fast_path):
        return sdk
    from handoff.accel import mcp_fastcall, mcp_fastpath  # only now: they use this SDK version's private names

    if not mcp_fastpath.supported(manager):
        return sdk
    sessions = mcp_fastpath.LegacySessions()
    server.middleware.append(sessions.record)

    async def run_tool(name: str, arguments: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
        return await tools.run_tool(deps, name, arguments)

    tool = ("handoff.mcp.server", run_tool, tools.text_of)  # the module of handoff's tools/call handler
    direct = mcp_fastcall.Direct(server, deps, tool, allowed_middleware=(sessions.record,))
    return mcp_fastpath.FastPath(sdk, manager, server, deps, sessions, direct)


def build_app(
    server: Server[Deps],
    deps: Deps,
    activity: Activity,
    host: str,
    *,
    fast_path: bool = True,
    auth: Auth | None = None,
    url: str = "",
    allowed_hosts: Sequence[str] = (),
    hardening: Hardening = DEFAULTS,
) -> Starlette:
    """The ASGI app; its lifespan runs the MCP session manager. `fast_path=False` leaves every request to the SDK.

    With `auth`, /mcp takes only valid bearer tokens and the protected-resource metadata for `url` is served.
    """
    limits = deps.limits
    security = security_settings(host, allowed_hosts)
    manager = StreamableHTTPSessionManager(
        app=server,
        security_settings=security,
        max_request_body_size=max(4 << 20, 8 * limits.content_max_bytes),
    )

    async def healthz(_: Request) -> Response:
        # Liveness: 200 while the process serves (healthy or degraded), 503 once it cannot take writes.
        report = await deps.health.report()
        status = 503 if report["status"] == "unhealthy" else 200
        return JSONResponse({**report, "pid": os.getpid()}, status_code=status)

    async def readyz(_: Request) -> Response:
        ready = await deps.reads.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(deps.metrics.render(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    endpoint: ASGIApp = guard.PrincipalGuard(mcp_endpoint(server, manager, deps, fast_path), hardening)
    if hardening.body_timeout and not gate.enabled(gate.UVICORN_GUARD):
        endpoint = guard.BodyDeadline(endpoint, hardening.body_timeout)  # the protocol's deadlines are off
    routes = [
        Route("/mcp", endpoint=_Tracked(endpoint if auth is None else auth.protect(endpoint, url), activity, deps)),
        Route("/healthz", guard.host_checked(healthz, security), methods=["GET"]),
        Route("/readyz", guard.host_checked(readyz, security), methods=["GET"]),
        Route("/metrics", guard.host_checked(metrics, security), methods=["GET"]),
        *(auth.routes(url) if auth is not None else ()),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: the OS picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they
    # are TCP, and with Nagle on, every keep-alive response waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def url_of(sock: socket.socket) -> str:
    """The MCP endpoint URL of a bound socket."""
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # a wildcard bind is reached over loopback
    return f"http://{host_literal(host)}:{port}/mcp"


def _http_protocol(coalesce: bool, hardening: Hardening = DEFAULTS, cap: int = 0) -> Any:
    """Uvicorn's httptools protocol, with the accelerators that run.

    Over a transport that coalesces each reply's writes, and with header/body deadlines and the connection cap.
    """
    base: Any = "httptools"
    if gate.enabled(gate.UVICORN_COALESCE, coalesce):
        from handoff.accel.uvicorn_coalesce import CoalescingHttpToolsProtocol  # subclasses this uvicorn's protocol

        base = CoalescingHttpToolsProtocol
    if not gate.enabled(gate.UVICORN_GUARD):
        return base
    from handoff.accel import uvicorn_guard

    if base == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    return uvicorn_guard.guarded(base, hardening.header_timeout, hardening.body_timeout, cap)


class _Server(uvicorn.Server):
    """uvicorn without its habit of re-raising the stop signal after shutdown: we still have to clean up."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def serve(
    app: ASGIApp,
    sock: socket.socket,
    *,
    on_started: Callable[[str], None],
    should_stop: Callable[[], Awaitable[bool]] | None = None,
    poll: float = 1.0,
    coalesce: bool = True,
    hardening: Hardening = DEFAULTS,
) -> None:
    """Serve until SIGINT/SIGTERM (or `should_stop`), then shut down gracefully.

    `coalesce=False` (``HANDOFF_FAST_PATH=0``) leaves uvicorn's httptools protocol as it is.
    """
    for handler in logging.getLogger().handlers:  # bad requests (and a shortage of descriptors) log a bounded amount
        if not any(isinstance(f, guard.LogBudget) for f in handler.filters):
            handler.addFilter(guard.LogBudget())
    cap, backlog = guard.connection_limits(hardening.max_connections)
    protocol = _http_protocol(coalesce, hardening, cap)
    config = uvicorn.Config(
        app,
        http=protocol,  # httptools' C parser costs a fraction of h11's pure-Python one per request
        # the public fallback of the cap when the protocol does not close connections past it: 503 to their requests
        limit_concurrency=None if gate.enabled(gate.UVICORN_GUARD) else (cap or None),
        lifespan="on",
        backlog=backlog,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=3,
        ws="none",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        on_started(url_of(sock))
    while should_stop is not None and not task.done() and not server.should_exit:
        if await should_stop():
            server.should_exit = True
            break
        await asyncio.wait({task}, timeout=poll)
    await task
