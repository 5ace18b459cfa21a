"""A broker restart mid-run: calls during the outage get UNAVAILABLE, no acknowledged write is lost or doubled."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import pytest

from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.errors import Unavailable
from handoff.kernel.events import ContextAppended
from kafka.support import Broker, read_events, running_service, running_worker
from streams.topics import Topics

pytestmark = pytest.mark.anyio


@pytest.mark.xfail(
    strict=False,
    reason="open: after the restart aiokafka raises KeyError in MessageAccumulator's callback when a broken "
    "idempotent/transactional producer is stopped with batches pending; resumption not yet proven",
)
async def test_a_broker_restart_loses_and_doubles_no_acknowledged_write_and_the_system_resumes(
    broker: Broker, tmp_path: Path
) -> None:
    topics = Topics(f"r{uuid.uuid4().hex[:8]}", 4)
    async with running_worker(broker.bootstrap, topics, tmp_path / "w"):
        async with running_service(broker.bootstrap, topics, timeout=4) as svc:
            keys = [f"r{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
            for key in keys:
                await svc.submit(RegisterSession(session_key=key, agent_from="a"))
            acked: list[str] = []
            unavailable = 0
            after_restart: list[str] = []
            restarted = asyncio.Event()
            stop = asyncio.Event()

            async def writer(lane: int) -> None:
                nonlocal unavailable
                n = 0
                while not stop.is_set():
                    content = f"l{lane}-{n}"
                    n += 1
                    try:
                        await svc.submit(AppendContext(session_key=keys[lane], context_type="message", content=content))
                    except Unavailable:
                        unavailable += 1
                        await asyncio.sleep(0.2)
                        continue
                    acked.append(content)
                    if restarted.is_set():
                        after_restart.append(content)
                        if len(after_restart) >= 40:
                            stop.set()

            writers = [asyncio.create_task(writer(i)) for i in range(4)]
            while len(acked) < 40:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(broker.run, "restart")
            restarted.set()
            async with asyncio.timeout(180):
                await asyncio.gather(*writers)
            assert unavailable > 0, "calls during the outage should have been refused with UNAVAILABLE"

            events = await read_events(broker.bootstrap, topics)
            contents = Counter(e.event.content for _, _, e, _ in events if isinstance(e.event, ContextAppended))
            assert all(count == 1 for count in contents.values()), "a write was applied twice"
            assert all(contents[c] == 1 for c in acked), "an acknowledged write was lost"
            for key in keys:
                stream = sorted((e.version for _, _, e, _ in events if e.session_key == key))
                assert stream == list(range(1, len(stream) + 1))
                assert (await svc.session(key)).version == len(stream)  # type: ignore[union-attr]
