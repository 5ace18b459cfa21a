"""uvicorn's httptools protocol over a transport that sends each reply's head and body in one write.

An accelerator: it subclasses uvicorn's `HttpToolsProtocol` and relies on its ``loop`` attribute and
on ``connection_made`` being where it takes its transport, which are uvicorn's internals.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Coalescing(asyncio.Transport):
    """A transport that sends the writes of one event-loop turn together.

    uvicorn writes a reply's status line and headers, then its body, as two writes: two syscalls
    and two TCP segments on a keep-alive loopback connection, which cost as much as the tool call.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport, self._loop = transport, loop
        self._pending: list[bytes | bytearray | memoryview] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending.append(data)
        if len(self._pending) > 1:
            self._flush()  # a reply's body right after its headers: send both now, in one segment
        else:
            self._loop.call_soon(self._flush)  # a lone write waits at most until the loop's next turn

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(chunk) for chunk in self._pending)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a coalescing transport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take the connection's transport, wrapped so that each reply goes out in one write."""
        # a cast, not an isinstance check: uvloop's transports do not derive from asyncio.Transport
        super().connection_made(_Coalescing(cast(asyncio.Transport, transport), self.loop))
