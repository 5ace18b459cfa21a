"""What keeps one client of ``serve`` from crowding out the others (CONTRACT §7, hardening).

- `host_checked`: ``/healthz``, ``/readyz`` and ``/metrics`` answer only Host/Origin headers that
  ``/mcp`` accepts (DNS rebinding), with the SDK's own `TransportSecurityMiddleware`.
- `PrincipalGuard`: a token bucket per principal (the bearer token's id, or the client address with
  ``--auth none``) answering HTTP 429 + ``Retry-After`` past the rate, and a cap on the MCP sessions
  each principal holds open: opening one more closes its oldest (with the DELETE a client would send),
  so a flood of ``initialize`` calls from one principal churns only that principal's sessions and
  never fills the SDK's session table for everyone.
- `LogBudget`: a logging filter that lets through a few records per source and interval and
  truncates each, so hostile traffic (or a file-descriptor shortage) cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handoff.hardenoptions import Hardening

_SESSION_HEADER = b"mcp-session-id"
_BACKLOG = 2048  # the listen backlog when descriptors are plenty
_MAX_PRINCIPALS = 100_000  # buckets kept at most (least recently seen dropped first)


def connection_limits(max_connections: int, reserve: int = 32) -> tuple[int, int]:
    """The open-connection cap (0: none) and the listen backlog, within the file descriptors left.

    The cap is `max_connections`, lowered to ``RLIMIT_NOFILE`` less the descriptors already open, less
    `reserve` for the store and the rest, so that connections cannot use up what ``/healthz`` and the
    store need. The backlog is also how many connections the event loop accepts in one go before any
    is closed, so it stays within what is left beyond the cap.
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return max_connections, _BACKLOG
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64  # not Linux: a guess at what a serving process holds
    room = soft - in_use
    cap = max(8, room - reserve)
    cap = min(max_connections, cap) if max_connections else cap
    return cap, max(8, min(_BACKLOG, (room - cap) // 2))


def host_checked(
    endpoint: Callable[[Request], Awaitable[Response]], settings: TransportSecuritySettings
) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint`, answering 421/403 to a Host/Origin that /mcp would refuse."""
    security = TransportSecurityMiddleware(settings)

    async def checked(request: Request) -> Response:
        refused = await security.validate_request(request)
        return refused if refused is not None else await endpoint(request)

    return checked


def principal_key(scope: Scope) -> str:
    """Whom a request counts against: its verified token's id, else its client address."""
    user = scope.get("user")
    if isinstance(user, AuthenticatedUser):
        return "token:" + user.access_token.client_id
    client = scope.get("client")
    return "address:" + (client[0] if client else "?")


class _Bucket:
    __slots__ = ("level", "at")

    def __init__(self, level: float, at: float) -> None:
        self.level, self.at = level, at


class PrincipalGuard:
    """The /mcp endpoint behind a per-principal rate limit and session cap (see the module's text)."""

    def __init__(self, app: ASGIApp, hardening: Hardening, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.rate, self.burst, self.max_sessions = (
            app,
            hardening.rate,
            hardening.burst,
            hardening.max_sessions,
        )
        self.clock = clock
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.sessions: dict[str, deque[str]] = {}
        self.log = logging.getLogger("handoff.guard")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request: a dict lookup and a little arithmetic, unless it may open a session."""
        key = principal_key(scope)
        if self.rate:
            wait = self._take(key)
            if wait:
                await Response("Too many requests", status_code=429, headers={"Retry-After": str(math.ceil(wait))})(
                    scope, receive, send
                )
                return
        if self.max_sessions and scope["method"] == "POST" and not _has_session(scope):
            await self.app(scope, receive, self._opening(key, scope, send))
            return
        await self.app(scope, receive, send)

    def _take(self, key: str) -> float:
        """Take one request from `key`'s bucket: 0, or the seconds until it may send the next."""
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= _MAX_PRINCIPALS:
                self.buckets.popitem(last=False)
            bucket = self.buckets[key] = _Bucket(self.burst, now)
        else:
            self.buckets.move_to_end(key)
            bucket.level = min(self.burst, bucket.level + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.level < 1.0:
            return (1.0 - bucket.level) / self.rate
        bucket.level -= 1.0
        return 0.0

    def _opening(self, key: str, scope: Scope, send: Send) -> Send:
        """`send`, noting the session an initialize opens, and closing the principal's oldest past the cap."""

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", ()):
                    if name.lower() == _SESSION_HEADER:
                        await self._opened(key, value.decode("latin-1"), scope)
                        break
            await send(message)

        return noting

    async def _opened(self, key: str, session_id: str, scope: Scope) -> None:
        held = self.sessions.setdefault(key, deque())
        held.append(session_id)
        while len(held) > self.max_sessions:
            oldest = held.popleft()
            self.log.info("closing the oldest MCP session of a principal at its cap", extra={"cap": self.max_sessions})
            await self._close(oldest, scope)

    async def _close(self, session_id: str, scope: Scope) -> None:
        """DELETE the session through the SDK, as its client would (a session already gone answers 404)."""
        headers = [(n, v) for n, v in scope.get("headers", ()) if n in (b"host", b"authorization")]
        delete: dict[str, Any] = {
            **scope,
            "method": "DELETE",
            "headers": [*headers, (_SESSION_HEADER, session_id.encode())],
        }

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def discard(_: Message) -> None:
            return None

        await self.app(delete, receive, discard)


def _has_session(scope: Scope) -> bool:
    return any(name == _SESSION_HEADER for name, _ in scope.get("headers", ()))


class LogBudget(logging.Filter):
    """At most `per_interval` records per logger and `interval` seconds, each cut to `max_chars`.

    Past the budget, records are dropped; the next one let through says how many were.
    """

    def __init__(
        self,
        per_interval: int = 20,
        interval: float = 10.0,
        max_chars: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.per_interval, self.interval, self.max_chars, self.clock = per_interval, interval, max_chars, clock
        self.windows: dict[str, list[float]] = {}  # logger -> [window start, records let through, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        """Let `record` through (truncated) while its logger's budget lasts; records below WARNING always."""
        if record.levelno < logging.WARNING or record.name == "handoff":
            return True
        now = self.clock()
        window = self.windows.get(record.name)
        if window is None or now - window[0] >= self.interval:
            dropped = int(window[2]) if window is not None else 0
            window = self.windows[record.name] = [now, 0.0, 0.0]
            if dropped:
                record.msg, record.args = f"({dropped} similar records dropped) {record.getMessage()}", None
        if window[1] >= self.per_interval:
            window[2] += 1
            return False
        window[1] += 1
        self._truncate(record)
        return True

    def _truncate(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if len(message) > self.max_chars:
            record.msg, record.args = message[: self.max_chars] + "…", None
        if record.exc_info:  # folded into the message, cut from the top: the raising frame is the last
            text = logging.Formatter().formatException(record.exc_info)
            if len(text) > self.max_chars:
                text = "…" + text[-self.max_chars :]
            record.msg, record.args, record.exc_info, record.exc_text = (
                f"{record.getMessage()}\n{text}",
                None,
                None,
                None,
            )


class BodyDeadline:
    """The public fallback of the body timeout (when the uvicorn-guard accelerator is off).

    A request whose body has not all arrived `seconds` after the endpoint first asks for it is
    treated as disconnected; once the body is in, `receive` is the server's own again (a GET stream
    waits on it for the client to leave). Header timeouts have no ASGI-level equivalent.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request with its body due within the deadline."""
        loop = asyncio.get_running_loop()
        end: float | None = None
        complete = False

        async def timed() -> Message:
            nonlocal end, complete
            if complete:
                return await receive()
            if end is None:
                end = loop.time() + self.seconds
            try:
                message = await asyncio.wait_for(receive(), max(end - loop.time(), 0.0))
            except TimeoutError:
                complete = True
                return {"type": "http.disconnect"}
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed, send)
