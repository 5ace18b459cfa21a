"""Expiry in Kafka mode (CONTRACT §8): the worker that owns a partition sweeps that partition's store.

Each ready partition's store holds the due-index (written with the events it decided, and by
`catch_up` with the events it folded, so a new owner after a failover knows everything due). The
sweep is the embedded engine's `Sweeper` over that store; what it issues is produced to the
partition's command topic, so the expiry is decided in the partition's normal transactional path,
by its single writer, carrying the version it was judged at. A command sent twice (a sweep before
the first was decided, or an old owner's and a new owner's) is refused by the kernel the second
time: nothing expires twice. Refusals are answered to a reply address nobody reads, so a normal
lost race does not land in the dead letters.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer

from handoff.engine.sweeper import SWEEP_EVERY, Sweeper
from handoff.kernel.commands import Command
from handoff.kernel.state import SessionState
from handoff.storage.due import seed
from streams.partition import PartitionStore
from streams.records import CommandRecord, encode_command, new_reply_key
from streams.security import PLAINTEXT, KafkaSecurity
from streams.topics import Topics

log = logging.getLogger("handoff.worker")


class PartitionSweeps:
    """Sweeps every partition this worker owns and has prepared, every `every` seconds.

    With `every` None it runs no timer of its own: the worker's job runner (`streams.jobs`) drives
    the sweeps and sends what they issue through `sender`.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        worker_id: str,
        stores: Callable[[], Mapping[int, PartitionStore]],
        clock: Callable[[], str],
        every: float | None = SWEEP_EVERY,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap, self.topics, self.worker_id = bootstrap, topics, worker_id
        self.security = security
        self.stores, self.clock, self.every = stores, clock, every
        self.sent = 0  # expiry commands produced, for logs and tests
        self._ids = itertools.count()
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start producing and sweeping."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all", **self.security.client_kwargs()
        )
        await self._producer.start()
        if self.every is not None:
            self._task = asyncio.create_task(self._run(), name="handoff-partition-sweeps")

    async def stop(self) -> None:
        """Stop sweeping (a sweep in flight is abandoned: its entries stay, the next owner reads them)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def sweep(self) -> None:
        """One pass over every ready partition."""
        for p, store in list(self.stores().items()):
            seed(store.kv)  # a store written before expiry existed gets its entries once (then a single get)
            await Sweeper(store.kv, _states_of(store), self.sender(p), self.clock).sweep()

    def sender(self, p: int) -> Callable[[Command], Any]:
        """What sends an expiry command to partition `p`'s writer (through the commands topic)."""

        async def send(command: Command) -> None:
            record = CommandRecord(
                command_id=f"sweep-{self.worker_id}-{next(self._ids):x}",
                command=command,
                reply_to=f"sweeper:{self.worker_id}",  # refusals are replies, not dead letters
                reply_key=new_reply_key()[0],  # nobody reads them: sealed, they show no session's metadata
            )
            key = command.session_key.encode()
            await self._producer.send_and_wait(self.topics.commands, encode_command(record), key=key, partition=p)
            self.sent += 1

        return send

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the agent's guard: a partition released mid-sweep closes its store under us
                log.exception("expiry sweep failed; its entries stay for the next sweep")
            await asyncio.sleep(self.every or SWEEP_EVERY)


def _states_of(store: PartitionStore) -> Callable[[str], SessionState | None]:
    """The decided states of a store, through its current engine (catching up replaces it)."""
    return lambda key: store.engine.state(key)
