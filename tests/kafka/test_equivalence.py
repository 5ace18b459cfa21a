"""One command script, embedded engine vs Kafka mode: every view has the same digest."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel import commands as C
from handoff.kernel.errors import HandoffError
from handoff.kernel.events import HandoffRequested
from handoff.kernel.operations import JOBS, JobConfig
from handoff.ports import CommandBus
from handoff.storage.digest import digest
from handoff.storage.kv import InMemoryKeyValue
from kafka.support import Broker, running_service, running_worker, served_digest
from streams.topics import Topics

pytestmark = pytest.mark.anyio


def fake_clock() -> Callable[[], str]:
    start, n = datetime(2026, 1, 1, tzinfo=UTC), [0]

    def now() -> str:
        n[0] += 1
        return (start + timedelta(milliseconds=n[0])).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return now


# The worker's job runner runs each job once at start-up, and every run reads the clock: on this ticking
# clock that would shift every later timestamp of the worker against the embedded engine's. The comparison
# is of deciding and folding, so the worker beside the tick clock runs no jobs.
NO_JOBS = {name: JobConfig(enabled=False) for name in JOBS}


def fake_ids() -> Callable[[], str]:
    n = [0]

    def new_id() -> str:
        n[0] += 1
        return f"{n[0]:032x}"

    return new_id


async def script(bus: CommandBus) -> list[str]:
    """A bit of everything, one command at a time; returns the outcome codes."""
    out: list[str] = []

    async def run(cmd: C.Command) -> str | None:
        try:
            outcome = await bus.submit(cmd)
        except HandoffError as exc:
            out.append(exc.code)
            return None
        out.append("OK")
        event = outcome.envelope.event
        return event.handoff_id if isinstance(event, HandoffRequested) else None

    for s in range(6):
        key = f"eq-{s}"
        await run(C.RegisterSession(session_key=key, agent_from=f"agent-{s % 3}", metadata={"n": s}))
        for i in range(s + 2):
            kind = ("message", "decision", "task", "file")[i % 4]
            await run(C.AppendContext(session_key=key, context_type=kind, content=f"{key} entry {i}"))  # type: ignore[arg-type]
        hid = await run(
            C.RequestHandoff(
                session_key=key,
                target_agent="b",
                request_type="full_handoff" if s % 2 else "context_transfer",
                token_budget=200,
            )
        )
        assert hid is not None
        if s % 3 == 0:
            await run(C.RejectHandoff(session_key=key, handoff_id=hid, agent="b", reason="no"))
        else:
            await run(C.AcceptHandoff(session_key=key, handoff_id=hid, agent="b"))
            await run(C.CompleteHandoff(session_key=key, handoff_id=hid, agent="b", result={"done": s}))
        await run(C.AppendContext(session_key=key, context_type="message", content="after", idempotency_key="i1"))
        await run(C.AppendContext(session_key=key, context_type="message", content="after", idempotency_key="i1"))
        if s == 4:
            await run(C.CloseSession(session_key=key, agent="agent-1", reason="done"))
    return out


async def test_the_same_script_gives_identical_views_in_embedded_and_kafka_mode(broker: Broker, tmp_path: Path) -> None:
    kv = InMemoryKeyValue()
    engine = Engine(kv, clock=fake_clock(), new_id=fake_ids(), sync=False)
    await engine.start()
    try:
        embedded_codes = await script(EmbeddedService(engine))
    finally:
        await engine.stop()

    topics = Topics(f"e{uuid.uuid4().hex[:8]}", 4)
    async with running_worker(
        broker.bootstrap, topics, tmp_path / "w", clock=fake_clock(), new_id=fake_ids(), job_defaults=NO_JOBS
    ):
        async with running_service(broker.bootstrap, topics) as svc:
            kafka_codes = await script(svc)
            served = await served_digest(svc, topics)
    assert kafka_codes == embedded_codes
    assert served == digest(kv)
