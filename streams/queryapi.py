"""The worker's query endpoint: answers reads for the partitions it owns, over HTTP (msgpack bodies).

    POST /q      {"op": ..., args..., "wait": {partition: commandOffset}}  → {"ok": ..., ...} | {"error": {...}}
    POST /q      {"op": "digest", "prefixes": [...] | null} → {"ok": {partition: {"sum", "applied"}}, ...}
    GET  /health {"workerId", "url", "partitions": [owned and ready], "applied": {p: offset}}

``wait`` is read-your-writes: the worker answers only once its store has decided the command records
up to the given offsets of ``handoff.commands``, for the partitions it answers for (or 503 after a short
deadline). A session read for a
partition this worker does not own gets 421, and the caller asks the owner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import msgspec
from aiohttp import web

from handoff.engine.timings import Stopwatch, StoreTimings
from handoff.kernel.errors import HandoffError
from handoff.storage import keys
from handoff.storage.digest import digest_sum
from handoff.storage.keys import VIEW_PREFIXES
from projections.queries import decode_cursor
from projections.views import HandoffView
from streams.partition import PartitionStore
from streams.records import error_body

WAIT_DEADLINE = 5.0
_enc = msgspec.msgpack.Encoder()


T = TypeVar("T")


class Owner(Protocol):
    """What the endpoint needs of the worker."""

    worker_id: str
    url: str

    def ready_stores(self) -> dict[int, PartitionStore]:
        """The stores of the partitions this worker owns and has caught up."""

    def partition_for(self, session_key: str) -> int:
        """The partition of a session."""

    async def in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """Run store work in a thread that the worker lets finish before it closes its stores."""


class NotOwner(Exception):
    """This worker does not own the partition asked for."""


class Lagging(Exception):
    """The store did not reach the offset a read waits for in time."""


class QueryApi:
    """The handlers; `app()` builds the aiohttp application."""

    def __init__(self, owner: Owner, read_seconds: Callable[[float], None] | None = None) -> None:
        self.owner = owner
        self.timings = StoreTimings() if read_seconds is None else StoreTimings(read=read_seconds)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/q", self.query)
        app.router.add_get("/health", self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        """Which partitions this worker answers for."""
        stores = self.owner.ready_stores()
        body = {
            "workerId": self.owner.worker_id,
            "url": self.owner.url,
            "partitions": sorted(stores),
            "applied": {str(p): s.applied for p, s in stores.items()},
        }
        return web.json_response(body)

    async def query(self, request: web.Request) -> web.Response:
        """One read."""
        body: dict[str, Any] = msgspec.msgpack.decode(await request.read())
        wait = {int(p): int(o) for p, o in (body.get("wait") or {}).items()}
        try:
            result = await self._answer(body, wait)
        except NotOwner:
            return web.Response(status=421, body=_enc.encode({"notOwner": True}))
        except Lagging:
            return web.Response(status=503, body=_enc.encode({"lagging": True}))
        except HandoffError as exc:
            result = {"error": msgspec.to_builtins(error_body(exc))}
        return web.Response(body=_enc.encode(result), content_type="application/msgpack")

    async def _store_for(self, key: str, wait: dict[int, int]) -> PartitionStore:
        p = self.owner.partition_for(key)
        store = self.owner.ready_stores().get(p)
        if store is None:
            raise NotOwner(p)
        await _caught_up(lambda: {p: store} if self.owner.ready_stores().get(p) is store else {}, {p: wait.get(p, -1)})
        return store

    async def _all(self, wait: dict[int, int]) -> dict[int, PartitionStore]:
        stores = dict(self.owner.ready_stores())
        await _caught_up(self.owner.ready_stores, {p: wait.get(p, -1) for p in stores})
        return stores

    async def _answer(self, body: dict[str, Any], wait: dict[int, int]) -> dict[str, Any]:
        op = body["op"]
        if op in ("session", "summary", "context", "package"):
            store = await self._store_for(body["key"], wait)
            with Stopwatch(self.timings.read):
                return {"ok": _session_read(store, op, body)}
        stores = await self._all(wait)
        if op == "handoff":
            with Stopwatch(self.timings.read):
                views = (store.engine.handoff_view(body["hid"]) for store in stores.values())
                return {"ok": next((v for v in views if v is not None), None), "partitions": sorted(stores)}
        if op in ("list_sessions", "list_handoffs"):
            with Stopwatch(self.timings.read):
                return {"ok": _listing(stores, op, body), "partitions": sorted(stores)}
        if op == "dump":
            owned = stores.get(int(body["partition"]))
            if owned is None:
                raise NotOwner(body["partition"])
            return {"ok": [[k, v] for prefix in VIEW_PREFIXES for k, v in owned.kv.scan(prefix)]}
        if op == "digest":  # handoff verify --kafka: each owned partition's views as a partial digest
            prefixes = tuple(bytes(x) for x in body.get("prefixes") or VIEW_PREFIXES)
            sums = {str(p): await self.owner.in_thread(_digest, s, prefixes) for p, s in stores.items()}
            return {"ok": sums, "partitions": sorted(stores)}
        raise ValueError(f"unknown query {op!r}")


async def _caught_up(stores: Callable[[], dict[int, PartitionStore]], wait: dict[int, int]) -> None:
    deadline = time.monotonic() + WAIT_DEADLINE
    while True:
        current = stores()
        if any(p not in current for p in wait):
            raise NotOwner(wait)
        if all(current[p].decided >= offset for p, offset in wait.items()):
            return
        if time.monotonic() > deadline:
            raise Lagging(wait)
        await asyncio.sleep(0.005)


def _digest(store: PartitionStore, prefixes: tuple[bytes, ...]) -> dict[str, Any]:
    """The partition's `digest_sum` (hex) and the event offset it reflects (retried if a write came between)."""
    for _ in range(10):
        applied = store.applied
        total = digest_sum(store.kv, prefixes)
        if store.applied == applied:
            break
    return {"sum": f"{total:064x}", "applied": applied}


def _session_read(store: PartitionStore, op: str, body: dict[str, Any]) -> Any:
    engine, key, as_of = store.engine, body["key"], body.get("asOf")
    queries = engine.queries if as_of is None else engine.as_of(key, as_of)
    if op == "session":
        return engine.session_view(key) if as_of is None else queries.session(key)
    if op == "summary":
        return engine.summary_view(key) if as_of is None else queries.reader.summary(key)
    if op == "package":
        view = msgspec.msgpack.decode(body["view"], type=HandoffView)
        return engine.queries.package_entries(view)
    entries, nxt = queries.context(key, body["after"], body["limit"])
    return [entries, nxt]


def _listing(stores: dict[int, PartitionStore], op: str, body: dict[str, Any]) -> list[list[bytes]]:
    """Up to limit+1 (index key, view) pairs after the cursor, merged over this worker's partitions."""
    limit = int(body["limit"]) + 1
    if op == "list_sessions":
        prefix = keys.session_listing(body.get("agent"), body.get("status"))
        source = None
    else:
        prefix = keys.handoff_listing(body.get("target"), body.get("source"), body.get("status"))
        source = body.get("source") if body.get("target") else None
    after = decode_cursor(body["cursor"], prefix) if body.get("cursor") else None
    found: list[list[bytes]] = []
    for store in stores.values():
        found.extend(_scan(store, op, prefix, after, source, limit))
    found.sort(key=lambda kv: kv[0])
    return found[:limit]


def _scan(
    store: PartitionStore, op: str, prefix: bytes, after: bytes | None, source: str | None, limit: int
) -> Iterator[list[bytes]]:
    reader = store.engine.queries.reader
    n = 0
    for key, value in store.kv.scan(prefix, after):
        if n == limit:
            return
        ident = value.decode()
        view: Any = reader.session(ident) if op == "list_sessions" else reader.handoff(ident)
        if view is None or (source is not None and view.source_agent != source):
            continue
        n += 1
        yield [key, _enc.encode(view)]
