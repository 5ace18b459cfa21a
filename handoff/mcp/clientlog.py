"""The MCP ``logging`` capability: ``logging/setLevel``, then the server's own log lines as ``notifications/message``.

A client that sets a level receives, on its connection's standalone channel, every log record of
the server's own loggers (``handoff``, ``streams``, ``projections``) at or above that level, as
``{"level", "logger", "data": {"message", ...the record's extra fields}}``. The SDK's loggers are
left out: a record about sending a notification must not send another one.

The protocol dropped this capability in 2026-07-28 (SEP-2577); the SDK's runner refuses the method
in that era by itself. It is registered with `Server.add_request_handler` rather than the
deprecated ``on_set_logging_level`` argument, which warns on every construction.

Records may come from any thread (the log-sync thread logs too): `emit` only hands them to the
event loop, which sends them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession

from handoff.accel.mcp_session_close import connection_of, on_close
from handoff.logs import STANDARD_ATTRIBUTES

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 5,
    "emergency": logging.CRITICAL + 10,
}
OWN_LOGGERS = ("handoff", "streams", "projections")
MAX_CLIENTS = 1000  # connections that asked for log lines at once; a further one replaces none and gets none


def mcp_level(levelno: int) -> types.LoggingLevel:
    """The MCP level of a Python log level (the highest MCP level not above it)."""
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


class ClientLog(logging.Handler):
    """Forwards the server's log records to the MCP connections that set a level, each filtered by its level."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self._clients: dict[object, tuple[ServerSession, int]] = {}  # by connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._levels: dict[str, int] = {}  # the server's loggers' own levels, while lowered for a client

    def client_count(self) -> int:
        """Connections currently receiving log lines."""
        return len(self._clients)

    async def on_set_level(
        self, ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        """``logging/setLevel``: from now on, this connection receives the server's log lines at or above `level`."""
        session = ctx.session
        # The SDK exposes the connection only through a private attribute: the accelerators reach it.
        connection = connection_of(session)
        if connection not in self._clients:
            if len(self._clients) >= MAX_CLIENTS:
                return types.EmptyResult()
            on_close(session, self._forget, connection)
        self._loop = asyncio.get_running_loop()
        self._clients[connection] = (session, LEVELS[params.level])
        self._attach(LEVELS[params.level])
        return types.EmptyResult()

    def _forget(self, connection: object) -> None:
        self._clients.pop(connection, None)
        if not self._clients:
            logging.getLogger().removeHandler(self)
            for name, level in self._levels.items():  # nobody asks for more detail than stderr any more
                logging.getLogger(name).setLevel(level)
            self._levels.clear()

    def _attach(self, level: int) -> None:
        """Make sure records at `level` of the server's loggers are produced and reach this handler.

        Lowering a logger's level must not change what goes to stderr: the root's own handlers keep
        the level the root had.
        """
        root = logging.getLogger()
        if self not in root.handlers:
            for handler in root.handlers:
                if handler.level == logging.NOTSET:
                    handler.setLevel(root.level)
            root.addHandler(self)
        for name in OWN_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() > level:
                self._levels.setdefault(name, logger.level)
                logger.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for every connection whose level it reaches (on the event loop, from any thread)."""
        if not record.name.startswith(OWN_LOGGERS) or self._loop is None:
            return
        targets = [s for s, level in list(self._clients.values()) if record.levelno >= level]
        if not targets:
            return
        try:
            data: dict[str, object] = {"message": record.getMessage()}
            fields = record.__dict__.items()
            extra = ((k, _plain(v)) for k, v in fields if k not in STANDARD_ATTRIBUTES and not k.startswith("_"))
            data.update(extra)
            level = mcp_level(record.levelno)
            params = types.LoggingMessageNotificationParams(level=level, logger=record.name, data=data)
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is reported as logging does
            self.handleError(record)
            return
        try:
            self._loop.call_soon_threadsafe(self._send_all, targets, params)
        except RuntimeError:  # the loop is closed: the server is stopping
            pass

    def _send_all(self, targets: list[ServerSession], params: types.LoggingMessageNotificationParams) -> None:
        for session in targets:
            task = asyncio.get_running_loop().create_task(self._send(session, params))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, session: ServerSession, params: types.LoggingMessageNotificationParams) -> None:
        try:
            await session.send_notification(types.LoggingMessageNotification(params=params))
        except Exception:  # noqa: BLE001 - a closed or broken channel: this client no longer hears log lines
            self._forget(connection_of(session))
