"""uvicorn's httptools protocol with header and body deadlines and a cap on open connections.

An accelerator in the sense of handoff.accel: it subclasses uvicorn's `HttpToolsProtocol` and relies
on its internals (``connections``, ``loop``, ``transport`` and the parser callbacks
``on_message_begin`` / ``on_headers_complete`` / ``on_message_complete``). uvicorn has no public
setting for either deadline: a client that trickles its headers or its body holds the connection,
and its file descriptor, for as long as it likes. Here a connection that has not sent a request's
headers within the header timeout (counted from the connection or the request's first byte), or
its body within the body timeout after them, is closed; a connection past the cap is closed as
soon as it is accepted, so the process keeps file descriptors for its store and for ``/healthz``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedProtocol(HttpToolsProtocol):
    """The deadlines and the cap over uvicorn's protocol; `guarded` sets the limits (0: none)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 0
    _deadline: asyncio.TimerHandle | None = None
    _pending: bool | None = None  # a request being read: False while its headers come, True while its body does

    def connection_made(self, transport: Any) -> None:
        """Take the connection, or close it at once past the cap (connection_lost then forgets it)."""
        super().connection_made(transport)
        if self.max_connections and len(self.connections) > self.max_connections:
            transport.close()
            return
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse `data`; a request still incomplete after it gets its deadline (none is armed for one that is not)."""
        super().data_received(data)
        if self._pending is not None and self._deadline is None and not self.transport.is_closing():
            self._arm(self.body_timeout if self._pending else self.header_timeout)

    def on_message_begin(self) -> None:
        """A request's first byte: its headers are due (from this chunk, or from the connection if sooner)."""
        self._pending = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """The headers are in: the body is due within the body timeout."""
        self._disarm()
        self._pending = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The whole request is in: no deadline until the next one begins."""
        self._disarm()
        self._pending = None
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        if seconds:
            self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded(base: type[HttpToolsProtocol], header_timeout: float, body_timeout: float, max_connections: int) -> type:
    """`GuardedProtocol` over `base` (uvicorn's httptools protocol or a subclass of it), with these limits."""
    limits = {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections}
    return type("Guarded" + base.__name__, (GuardedProtocol, base), limits)
