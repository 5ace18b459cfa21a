"""The writer's durable commit through `sync_log`: readers wait for the sync, and a failed sync stops writes."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.errors import Unavailable
from handoff.storage.kv import RocksKeyValue

pytestmark = pytest.mark.anyio


class _HeldSync:
    """A `sync_log` that syncs RocksDB's log only once released (or fails, if told to)."""

    def __init__(self, kv: RocksKeyValue) -> None:
        self.kv = kv
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail = False

    def __call__(self) -> None:
        self.started.set()
        assert self.release.wait(10)
        if self.fail:
            raise OSError("disk gone")
        self.kv.sync_log()


async def _started(sync: _HeldSync) -> None:
    with anyio.fail_after(10):
        while not sync.started.is_set():
            await anyio.sleep(0.001)


async def test_a_read_waits_until_the_batch_written_before_it_is_durable(tmp_path: Path) -> None:
    kv = RocksKeyValue(str(tmp_path / "db"))
    sync = _HeldSync(kv)
    engine = Engine(kv, sync_log=sync)
    service = EmbeddedService(engine)
    await engine.start()
    try:
        sync.release.set()
        await service.submit(RegisterSession(session_key="s", agent_from="a"))
        sync.release.clear()
        sync.started.clear()
        seen: list[int] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.submit, AppendContext(session_key="s", context_type="message", content="x"))
            await _started(sync)

            async def read() -> None:
                entries, _ = await service.context("s", 0, 10)
                seen.append(len(entries))

            tg.start_soon(read)
            await anyio.sleep(0.05)
            assert seen == []  # the entry is in the store, not yet durable: the read waits
            sync.release.set()
        assert seen == [2]
    finally:
        await engine.stop()
        kv.close()


async def test_a_failed_log_sync_refuses_writes_until_a_sync_succeeds_again(tmp_path: Path) -> None:
    kv = RocksKeyValue(str(tmp_path / "db"))
    sync = _HeldSync(kv)
    sync.release.set()
    sync.fail = True
    engine = Engine(kv, sync_log=sync)
    await engine.start()
    try:
        with pytest.raises(Unavailable):
            await engine.submit(RegisterSession(session_key="s", agent_from="a"))
        with pytest.raises(Unavailable, match="retrying until the store takes writes again"):
            await engine.submit(RegisterSession(session_key="t", agent_from="a"))
        assert not engine.running
        sync.fail = False
        with anyio.fail_after(30):
            while not engine.running:
                await anyio.sleep(0.05)
        outcome = await engine.submit(RegisterSession(session_key="t", agent_from="a"))
        assert outcome.envelope.version == 1
    finally:
        await engine.stop()
        kv.close()
