"""The fast path of /mcp: one JSON-RPC request answered by the SDK's kernel without the SDK's HTTP transport.

The SDK's streamable-HTTP transport spends ~2.7 ms of CPU per call on machinery: per-request task
groups and memory streams, a dispatcher hop, an SSE writer task. For a POST carrying a single
request whose method is in `FAST_METHODS`, this module applies the transport's checks with the
SDK's own functions (Host/Origin and Content-Type, Accept, the live session and its handshake for
2025-11-25, the envelope and routing headers for 2026-07-28), runs the request through the same
kernel (`ServerRunner`: middleware, the version gate, params validation, the handler, the result
sieve, the 2026 ``serverInfo`` stamp) -- or, for a plain ``tools/call``, through `fastcall.Direct`,
which gives the kernel's result without its cost -- and writes the reply the transport would
write, serialized by the SDK's own models.

Whatever it is not sure of goes to the SDK untouched, the body replayed: a failed check, an
unknown or ending session, a batch, a notification, ``initialize``, GET/DELETE, a session opened
with another credential, a body over the limit. So every refusal is the SDK's own, in the SDK's order.
An authenticated request (``--auth token|jwt``) keeps the fast path: the SDK's auth middleware in
front of it has already verified the token and put it in the request's context.

Differences from the SDK path, none observable by handoff's handlers:

* no server-to-client requests during a fast call (`send_raw_request` raises `NoBackChannelError`),
  and request-scoped notifications are sent just before the reply instead of as they happen;
* a 2025-11-25 ``notifications/cancelled`` cannot interrupt a fast call (a client disconnect does
  not either), and a 2026-07-28 reply slower than 15 s is plain JSON instead of pinged SSE;
* an SSE reply carries Content-Length instead of chunked framing (same headers and bytes otherwise).
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import pydantic_core
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.runner import ServerRunner, modern_error_data, serve_one
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport, check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data, progress_token_from_params
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    ProgressToken,
    RequestId,
    jsonrpc_message_adapter,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handoff.accel.mcp_fastcall import Direct

log = logging.getLogger("handoff.mcp")

FAST_METHODS: Final = frozenset({
    "tools/call", "tools/list", "resources/list", "resources/templates/list", "resources/read",
    "prompts/list", "prompts/get",
})  # fmt: skip
"""Requests whose handlers use nothing of the transport (no server requests, no subscriptions)."""

_VERSION_HEADER: Final = MCP_PROTOCOL_VERSION_HEADER.encode("ascii")
_LEGACY_SSE: Final = (  # the headers of the SDK's 2025-11-25 SSE reply, in its order; the session id goes between
    {"cache-control": "no-cache, no-transform", "connection": "keep-alive", "content-type": "text/event-stream"},
    {"x-accel-buffering": "no"},
)
_MODERN_SSE: Final = {  # the headers of the SDK's 2026-07-28 SSE reply
    "content-type": "text/event-stream",
    "cache-control": "no-cache, no-transform",
    "connection": "keep-alive",
    "x-accel-buffering": "no",
}
Reply = JSONRPCResponse | JSONRPCError


class LegacySessions:
    """The SDK's 2025-11-25 connections by session id, recorded by a server middleware as they are served."""

    def __init__(self) -> None:
        self._by_id: dict[str, Connection] = {}

    async def record(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: remember the connection behind a session, forget it when the session ends."""
        connection = ctx.session._connection  # the SDK offers no public way to it
        sid = connection.session_id
        if sid is not None and sid not in self._by_id:
            self._by_id[sid] = connection
            connection.exit_stack.callback(self._by_id.pop, sid, None)
        return await call_next(ctx)

    def get(self, sid: str) -> Connection | None:
        """The connection of a session that has been served at least once."""
        return self._by_id.get(sid)

    def __len__(self) -> int:
        return len(self._by_id)


@dataclass
class _Exchange:
    """The `DispatchContext` of one fast request: no back-channel; notifications kept for the reply."""

    transport: TransportContext
    request_id: RequestId
    message_metadata: ServerMessageMetadata
    progress_token: ProgressToken | None = None
    notifications: list[JSONRPCNotification] = field(default_factory=list)
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    can_send_request: bool = False

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        if params is None:
            self.notifications.append(JSONRPCNotification(jsonrpc="2.0", method=method))
        else:
            self.notifications.append(JSONRPCNotification(jsonrpc="2.0", method=method, params=dict(params)))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if self.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)


def supported(manager: StreamableHTTPSessionManager) -> bool:
    """Whether this SDK's session manager has the session table the fast path reads (it is private)."""
    return isinstance(getattr(manager, "_server_instances", None), dict) and not manager.stateless


class FastPath:
    """ASGI app for /mcp: answers what it safely can, hands everything else to the SDK's app."""

    def __init__(
        self,
        sdk: ASGIApp,
        manager: StreamableHTTPSessionManager,
        server: Server[Any],
        lifespan_state: Any,
        sessions: LegacySessions,
        direct: Direct | None = None,
    ) -> None:
        self.sdk, self.manager, self.server, self.state, self.sessions = sdk, manager, server, lifespan_state, sessions
        self.direct = direct
        self.security = TransportSecurityMiddleware(manager.security_settings)
        self.json_response = manager.json_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request of /mcp."""
        user = scope.get("user")
        authenticated = user is None or isinstance(user, AuthenticatedUser)
        if scope["type"] != "http" or scope["method"] != "POST" or not authenticated or not self._fits(scope):
            return await self.sdk(scope, receive, send)
        body, read = await _read_body(receive, self.manager.max_request_body_size)
        if body is None or not await self._answer(scope, body, send):
            await self.sdk(scope, _replay(read, receive), send)

    def _fits(self, scope: Scope) -> bool:
        """False when the declared body is over the limit: the SDK refuses it before reading it."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                return not value.isdigit() or int(value) <= self.manager.max_request_body_size
        return True

    async def _answer(self, scope: Scope, body: bytes, send: Send) -> bool:
        """Answer the request and say True, or say False (nothing sent) to leave it to the SDK."""
        request = Request(scope)
        if await self.security.validate_request(request, is_post=True) is not None:
            return False
        has_json, has_sse = check_accept_headers(request)
        if not has_json or not (has_sse or self.json_response):
            return False
        version = next((v.decode("latin-1") for k, v in scope["headers"] if k == _VERSION_HEADER), None)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return await self._modern(request, body, send)
        return await self._legacy(request, body, send)

    # 2026-07-28: what `handle_modern_request` does, minus the task group around the handler.

    async def _modern(self, request: Request, body: bytes, send: Send) -> bool:
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            return False
        if not isinstance(decoded, dict) or "id" not in decoded:
            return False
        try:
            req = JSONRPCRequest.model_validate(decoded)
        except ValidationError:
            return False
        if req.method not in FAST_METHODS or find_duplicated_routing_header(request.headers.items()) is not None:
            return False
        verdict = classify_inbound_request(decoded, headers=dict(request.headers))
        if isinstance(verdict, InboundLadderRejection) or self._param_headers_refused(request, req):
            return False
        reply, notifications = await self._run_modern(request, req, verdict)
        if notifications:
            events = [_modern_event(n) for n in notifications] + [_modern_event(reply)]
            await _send(send, 200, _MODERN_SSE, b"".join(events))
        else:
            status = ERROR_CODE_HTTP_STATUS.get(reply.error.code, 200) if isinstance(reply, JSONRPCError) else 200
            data = json.dumps(reply.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"))
            await Response(data, status_code=status, media_type="application/json")(request.scope, _no_body, send)
        return True

    async def _run_modern(
        self, request: Request, req: JSONRPCRequest, verdict: InboundModernRoute
    ) -> tuple[Reply, list[JSONRPCNotification]]:
        notifications: list[JSONRPCNotification] = []  # a direct call sends none: only the kernel needs an exchange
        try:
            if self._direct(verdict.protocol_version, req):
                assert self.direct is not None and req.params is not None
                result = await self.direct.call(verdict.protocol_version, req.params)
            else:
                exchange = _Exchange(
                    transport=TransportContext(kind="streamable-http", can_send_request=False, headers=request.headers),
                    request_id=req.id,
                    message_metadata=ServerMessageMetadata(request_context=request),
                    progress_token=progress_token_from_params(req.params),
                    notifications=notifications,
                )
                envelope = (verdict.protocol_version, verdict.client_info, verdict.client_capabilities)
                connection = Connection.from_envelope(*envelope)
                result = await serve_one(
                    self.server, exchange, req.method, req.params, connection=connection, lifespan_state=self.state
                )
        except Exception as exc:  # noqa: BLE001 - the SDK's own exception-to-wire boundary, reproduced
            return JSONRPCError(jsonrpc="2.0", id=req.id, error=modern_error_data(exc)), notifications
        return JSONRPCResponse(jsonrpc="2.0", id=req.id, result=result), notifications

    def _owned_by_caller(self, sid: str, request: Request) -> bool:
        """The SDK's rule: a session serves only the credential that opened it (its owner table is private)."""
        user = request.scope.get("user")
        caller = authorization_context(user) if isinstance(user, AuthenticatedUser) else None
        return bool(caller == getattr(self.manager, "_session_owners", {}).get(sid))

    def _direct(self, version: str, req: JSONRPCRequest) -> bool:
        return req.method == "tools/call" and self.direct is not None and self.direct.applies(version, req.params)

    def _param_headers_refused(self, request: Request, req: JSONRPCRequest) -> bool:
        """Whether the SDK would refuse the call's ``Mcp-Param-*`` headers (its `_mcp_param_rejection`)."""
        lookup = self.server.get_tool_input_schema
        params = req.params or {}
        name, arguments = params.get("name"), params.get("arguments")
        if req.method != "tools/call" or lookup is None or not isinstance(name, str):
            return False
        if arguments is not None and not isinstance(arguments, Mapping):
            return False
        if not arguments and not any(h.startswith("mcp-param-") for h in request.headers):
            return False
        try:
            schema = lookup(name)
        except Exception:  # noqa: BLE001 - the SDK fails open here too (and logs it on its own path)
            return True  # let the SDK log it
        return schema is not None and validate_mcp_param_headers(schema, arguments or {}, request.headers) is not None

    # 2025-11-25: what the session's transport and dispatcher do, minus their streams and tasks.

    async def _legacy(self, request: Request, body: bytes, send: Send) -> bool:
        sid = request.headers.get(MCP_SESSION_ID_HEADER)
        transport = None if sid is None else self.manager._server_instances.get(sid)
        connection = None if sid is None else self.sessions.get(sid)
        if sid is None or transport is None or connection is None or not _open(transport, connection):
            return False
        if not self._owned_by_caller(sid, request):
            return False
        if not _json_content_type(request):
            return False
        try:
            message = jsonrpc_message_adapter.validate_python(pydantic_core.from_json(body), by_name=False)
        except (ValueError, ValidationError):  # a parse error is a ValueError
            return False
        if not isinstance(message, JSONRPCRequest) or message.method not in FAST_METHODS:
            return False
        with _InFlight(transport):
            reply, notifications = await self._run_legacy(request, message, connection)
        frames = [*notifications, reply]
        if self.json_response:
            data = reply.model_dump_json(by_alias=True, exclude_unset=True).encode()
            await _send(send, 200, {"content-type": "application/json", MCP_SESSION_ID_HEADER: sid}, data)
        else:
            events = b"".join(_legacy_event(frame) for frame in frames)
            headers = {**_LEGACY_SSE[0], MCP_SESSION_ID_HEADER: sid, **_LEGACY_SSE[1]}
            await _send(send, 200, headers, events)
        return True

    async def _run_legacy(
        self, request: Request, message: JSONRPCRequest, connection: Connection
    ) -> tuple[Reply, list[JSONRPCNotification]]:
        notifications: list[JSONRPCNotification] = []  # a direct call sends none: only the kernel needs an exchange
        version = connection.protocol_version
        try:
            if self._direct(version, message):
                assert self.direct is not None and message.params is not None
                result = await self.direct.call(version, message.params)
            else:
                exchange = _Exchange(
                    transport=TransportContext(kind="jsonrpc", can_send_request=False),
                    request_id=message.id,
                    message_metadata=ServerMessageMetadata(request_context=request, can_send_request=False),
                    progress_token=progress_token_from_params(message.params),
                    notifications=notifications,
                )
                runner = ServerRunner(self.server, connection, self.state)
                result = await runner.on_request(exchange, message.method, message.params)
        except Exception as exc:  # the SDK dispatcher's exception-to-wire boundary, reproduced
            error = handler_exception_to_error_data(exc)
            if error is None:
                log.exception("handler for %r raised", message.method)
                error = ErrorData(code=0, message=str(exc))  # the SDK's 2025-era dispatcher answers code 0
            return JSONRPCError(jsonrpc="2.0", id=message.id, error=error), notifications
        return JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result), notifications


def _open(transport: StreamableHTTPServerTransport, connection: Connection) -> bool:
    """A session that is live, not expiring, and past its ``initialize``."""
    idle = transport.idle_scope
    expiring = idle is not None and idle.cancel_called
    return not transport.is_terminated and not expiring and connection.initialize_accepted


def _json_content_type(request: Request) -> bool:
    """The transport's own Content-Type rule (stricter than the security check's prefix match)."""
    parts = request.headers.get("content-type", "").split(";")[0].split(",")
    return any(part.strip() == "application/json" for part in parts)


class _InFlight:
    """Hold the session open while the call runs, as `StreamableHTTPServerTransport.handle_request` does.

    A class, not a generator-based context manager: this runs on every fast call.
    """

    __slots__ = ("transport", "scope", "timeout")

    def __init__(self, transport: StreamableHTTPServerTransport) -> None:
        self.transport = transport
        self.scope, self.timeout = transport.idle_scope, transport._idle_timeout

    def __enter__(self) -> None:
        if self.scope is not None and self.timeout is not None:
            self.transport._requests_in_flight += 1
            self.scope.deadline = math.inf

    def __exit__(self, *exc: object) -> None:
        if self.scope is not None and self.timeout is not None:
            self.transport._requests_in_flight -= 1
            if not self.transport._requests_in_flight:
                self.scope.deadline = anyio.current_time() + self.timeout


def _legacy_event(frame: JSONRPCResponse | JSONRPCError | JSONRPCNotification) -> bytes:
    """One SSE event as the 2025-11-25 transport frames it (sse-starlette's CRLF framing)."""
    return b"event: message\r\ndata: " + frame.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\r\n\r\n"


def _modern_event(frame: JSONRPCResponse | JSONRPCError | JSONRPCNotification) -> bytes:
    """One SSE event as the 2026-07-28 entry frames it."""
    data = json.dumps(frame.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"))
    return f"event: message\r\ndata: {data}\r\n\r\n".encode()


async def _send(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
    """The whole body (None if it is over `limit` or the client left) and the messages read, for a replay."""
    read: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return None, read
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None, read
        if not message.get("more_body", False):
            return b"".join(chunks), read


def _replay(read: list[Message], receive: Receive) -> Receive:
    pending = deque(read)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
