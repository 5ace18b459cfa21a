"""The thread that makes the log durable while the event loop keeps serving.

`asyncio.to_thread` did the same at ~3x the cost per batch (a context copy, a thread-pool work
item, a concurrent future chained to an asyncio one): ~6% of the server's GIL time under a
16-client write load. One long-lived thread fed by a queue needs a put, the sync, and one
`call_soon_threadsafe` to answer.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

_Request = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class LogSyncThread:
    """Runs `sync_log` on request, one request at a time, and settles each request's future on its loop."""

    def __init__(self, sync_log: Callable[[], None]) -> None:
        self._sync_log = sync_log
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="handoff-log-sync", daemon=True)
        self._thread.start()

    def sync(self) -> asyncio.Future[None]:
        """A future that is done once everything written so far is durable (or fails as the sync did)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._requests.put((loop, future))
        return future

    def close(self) -> None:
        """Finish the pending syncs and end the thread."""
        self._requests.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (request := self._requests.get()) is not None:
            loop, future = request
            error: BaseException | None = None
            try:
                self._sync_log()
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting writer, which refuses writes from then on
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, future, error)
            except RuntimeError:  # the loop closed while the sync ran: nobody is waiting any more
                pass


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the writer was cancelled while waiting
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
