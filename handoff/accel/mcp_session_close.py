"""A callback when the connection behind an MCP `ServerSession` closes.

An accelerator (not for speed: for memory): the lowlevel SDK gives a handler a per-request
`ServerSession` whose connection, and that connection's ``exit_stack``, it keeps in a private
attribute. Without this hook a 2025-11-25 subscriber that disconnects without unsubscribing stays
in the subscriber table; notifying it is a no-op, as the SDK drops notifications to closed streams.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.session import ServerSession


def on_close(session: ServerSession, callback: Callable[..., Any], *args: Any) -> None:
    """Call ``callback(*args)`` when the session's connection ends."""
    session._connection.exit_stack.callback(callback, *args)


def connection_of(session: ServerSession) -> object:
    """What identifies the connection behind a per-request `ServerSession` (the session itself if unknown)."""
    return getattr(session, "_connection", session)
