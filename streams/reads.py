"""`KafkaReads`: the ReadModel port over the workers' query endpoints, by scatter and gather.

Session reads go to the worker that owns the session's partition; lists and handoff lookups go to
every worker and are merged by index key. Every read carries the offsets of the command records this
adapter had accepted (per partition), and workers answer only once their stores have decided them:
read-your-writes. When the workers cannot answer in time → `Unavailable`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec

from handoff.kernel.errors import HandoffError, Unavailable
from handoff.kernel.package import PackageEntry
from projections.queries import Page, encode_cursor
from projections.views import ContextEntryView, HandoffView, SessionView, SummaryView
from streams.directory import WorkerDirectory
from streams.records import ErrorBody, error_of

T = TypeVar("T")

_enc = msgspec.msgpack.Encoder()
_dec_session = msgspec.msgpack.Decoder(SessionView | None)
_dec_summary = msgspec.msgpack.Decoder(SummaryView | None)
_dec_handoff = msgspec.msgpack.Decoder(HandoffView | None)
_dec_context = msgspec.msgpack.Decoder(tuple[list[ContextEntryView], int | None])
_dec_entries = msgspec.msgpack.Decoder(list[PackageEntry])


class _Retry(Exception):
    """A worker could not answer now (not the owner, lagging, unreachable): refresh and try again."""


class KafkaReads:
    """Reads routed to the partitions' owners, retried until they answer or `timeout` passes."""

    def __init__(self, directory: WorkerDirectory, written: Mapping[int, int], *, timeout: float) -> None:
        self.directory = directory
        self.topics = directory.topics
        self.written = written  # partition -> newest command record this adapter had accepted: read-your-writes
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def stop(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.close()

    async def refresh_owners(self) -> None:
        """Ask the workers which partitions they have ready."""
        assert self._http is not None
        await self.directory.refresh_owners(self._http)

    # -- routing ------------------------------------------------------------------------------------

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        body["wait"] = {str(p): o for p, o in self.written.items()}
        try:
            async with self._http.post(f"{url}/q", data=_enc.encode(body)) as resp:
                raw = await resp.read()
                if resp.status in (421, 503):
                    raise _Retry(resp.status)
                resp.raise_for_status()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(str(exc)) from exc
        answer: dict[str, Any] = msgspec.msgpack.decode(raw)
        if "error" in answer:
            raise error_of(msgspec.convert(answer["error"], ErrorBody))
        return answer

    async def _with_retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.timeout
        while True:
            if self.directory.owners_stale():
                await self.refresh_owners()
            try:
                return await attempt()
            except _Retry as exc:
                if time.monotonic() > deadline:
                    raise Unavailable(f"the Kafka workers could not answer in time ({exc}); retry") from exc
                self.directory.forget_owners()
                await asyncio.sleep(0.05)

    async def _from_owner(self, partition: int, body: dict[str, Any]) -> Any:
        """Ask the owner of `partition`, retrying until there is one and it answers."""

        async def attempt() -> Any:
            url = self.directory.owners.get(partition)
            if url is None:
                raise _Retry("no worker owns the partition")
            return (await self._post(url, dict(body)))["ok"]

        return await self._with_retry(attempt)

    async def _session_read(self, body: dict[str, Any]) -> Any:
        return await self._from_owner(self.topics.partition_for(body["key"]), body)

    async def _everywhere(self, body: dict[str, Any], *, stop_at_hit: bool = False) -> list[Any]:
        """Ask every worker; retry until their partitions cover the whole topic."""

        async def attempt() -> list[Any]:
            urls = set(self.directory.owners.values())
            answers = await asyncio.gather(*(self._post(u, dict(body)) for u in urls), return_exceptions=True)
            covered: set[int] = set()
            results = []
            for answer in answers:
                if isinstance(answer, HandoffError):
                    raise answer
                if isinstance(answer, BaseException):
                    continue
                covered.update(answer["partitions"])
                results.append(answer["ok"])
            if stop_at_hit and any(r is not None for r in results):
                return results
            if covered != set(range(self.topics.partitions)):
                raise _Retry(f"partitions {sorted(set(range(self.topics.partitions)) - covered)} have no ready worker")
            return results

        return await self._with_retry(attempt)

    async def _merged(self, body: dict[str, Any], limit: int) -> tuple[list[bytes], str | None]:
        pairs: list[list[bytes]] = []
        for found in await self._everywhere(body):
            pairs.extend(found)
        pairs.sort(key=lambda kv: kv[0])
        page = pairs[:limit]
        cursor = encode_cursor(page[-1][0]) if len(pairs) > limit and page else None
        return [v for _, v in page], cursor

    # -- ReadModel ----------------------------------------------------------------------------------

    async def session(self, key: str, as_of: int | None = None) -> SessionView | None:
        """A session view from its owner."""
        raw = await self._session_read({"op": "session", "key": key, "asOf": as_of})
        view: SessionView | None = _dec_session.decode(_enc.encode(raw))
        return view

    async def summary(self, key: str, as_of: int | None = None) -> SummaryView | None:
        """A summary view from its owner."""
        raw = await self._session_read({"op": "summary", "key": key, "asOf": as_of})
        view: SummaryView | None = _dec_summary.decode(_enc.encode(raw))
        return view

    async def context(
        self, key: str, after: int, limit: int, as_of: int | None = None
    ) -> tuple[list[ContextEntryView], int | None]:
        """A page of context entries from the session's owner."""
        raw = await self._session_read({"op": "context", "key": key, "after": after, "limit": limit, "asOf": as_of})
        return _dec_context.decode(_enc.encode(raw))

    async def handoff(self, hid: str) -> HandoffView | None:
        """A handoff view, from whichever worker holds it."""
        for raw in await self._everywhere({"op": "handoff", "hid": hid}, stop_at_hit=True):
            if raw is not None:
                view: HandoffView | None = _dec_handoff.decode(_enc.encode(raw))
                return view
        return None

    async def package_entries(self, view: HandoffView) -> list[PackageEntry]:
        """The recorded package's entries, from the session's owner."""
        body = {"op": "package", "key": view.session_key, "view": _enc.encode(view)}
        return _dec_entries.decode(_enc.encode(await self._session_read(body)))

    async def list_sessions(
        self, agent: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[SessionView]:
        """Sessions newest first, merged over every worker."""
        body = {"op": "list_sessions", "agent": agent, "status": status, "limit": limit, "cursor": cursor}
        values, nxt = await self._merged(body, limit)
        return Page([msgspec.msgpack.decode(v, type=SessionView) for v in values], nxt)

    async def list_handoffs(
        self, target: str | None, source: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[HandoffView]:
        """Handoffs newest first, merged over every worker."""
        body = {
            "op": "list_handoffs", "target": target, "source": source, "status": status,
            "limit": limit, "cursor": cursor,
        }  # fmt: skip
        values, nxt = await self._merged(body, limit)
        return Page([msgspec.msgpack.decode(v, type=HandoffView) for v in values], nxt)

    async def dump_partition(self, partition: int) -> list[tuple[bytes, bytes]]:
        """Every view entry of a partition, from its owner (verification and tests)."""
        found = await self._from_owner(partition, {"op": "dump", "partition": partition})
        return [(bytes(k), bytes(v)) for k, v in found]
