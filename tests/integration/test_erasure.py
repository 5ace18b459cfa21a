"""CONTRACT §8 Erasure, embedded: after purge and after retention no file under the data dir holds the content,
verify says ERASED (exit 0), replay gives the live views byte for byte, reads show the erased form."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from handoff.audit.replay import replay
from handoff.audit.verify import verify
from handoff.cli import main
from handoff.engine.engine import Engine
from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    CloseSession,
    CompleteHandoff,
    RegisterSession,
    RequestHandoff,
)
from handoff.kernel.times import plus_seconds
from handoff.storage.digest import digest
from handoff.storage.kv import RocksKeyValue

MARKER = "MARKER-7f3a9c-secret"
DAY = 86_400


def _files_holding(root: Path, needle: str) -> list[Path]:
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


class _Clock:
    def __init__(self, now: str = "2026-12-01T09:00:00.000Z") -> None:
        self.now = now

    def __call__(self) -> str:
        return self.now


def _write_session(engine: Engine, key: str) -> None:
    results = engine.write_now(
        [
            RegisterSession(session_key=key, agent_from="alice", metadata={"note": MARKER + "-meta"}),
            AppendContext(session_key=key, context_type="message", content=f"the card is {MARKER}"),
            AppendContext(session_key=key, context_type="decision", content=f"decided {MARKER}", metadata={"m": 1}),
            AppendContext(session_key=key, context_type="task", content=f"do {MARKER}", metadata={"taskId": "t1"}),
        ]
    )
    assert not [r for r in results if isinstance(r, Exception)]
    (requested,) = engine.write_now(
        [RequestHandoff(session_key=key, target_agent="bob", request_type="full_handoff", request_data={"x": MARKER})]
    )
    assert not isinstance(requested, Exception)
    hid = requested.envelope.event.handoff_id  # type: ignore[union-attr]
    engine.write_now([AcceptHandoff(session_key=key, handoff_id=hid, agent="bob")])
    engine.write_now([CompleteHandoff(session_key=key, handoff_id=hid, agent="bob", result={"r": MARKER})])


def _store(root: Path) -> RocksKeyValue:
    return RocksKeyValue(str(root / "db"))


def _replayed_digest(kv: RocksKeyValue, _name: str) -> str:
    """The digest of the views `handoff replay` builds from the log (in a scratch dir outside the data dir)."""
    scratch = tempfile.mkdtemp(prefix="erasure-replay-")
    target = RocksKeyValue(scratch, bulk=True)
    try:
        return replay(kv, target, quiet=True).digest
    finally:
        target.discard()
        shutil.rmtree(scratch, ignore_errors=True)


def _with_engine(root: Path, clock: Callable[[], str], body: Callable[[Engine], None]) -> None:
    kv = _store(root)
    try:
        body(Engine(kv, clock=clock))
        kv.compact_all()  # what a running store does in time: the files show what is really kept
    finally:
        kv.close()


def test_content_is_encrypted_in_the_log_and_shown_in_the_clear_by_reads(tmp_path: Path) -> None:
    def body(engine: Engine) -> None:
        _write_session(engine, "s1")
        entries, _ = engine.queries.context("s1", 0, 100)
        assert entries[1].content == f"the card is {MARKER}" and entries[1].erased is False
        assert all(MARKER.encode() not in record for _, _, _, record in engine.log.global_records())

    _with_engine(tmp_path, _Clock(), body)


def test_purge_leaves_no_file_with_the_content_and_verify_says_erased(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_engine(tmp_path, _Clock(), lambda engine: _write_session(engine, "s1"))
    kv = _store(tmp_path)
    live_before, replayed_before = digest(kv), _replayed_digest(kv, "r1")
    kv.close()
    assert live_before == replayed_before
    assert _files_holding(tmp_path, MARKER)  # the views keep it in the clear until the session is erased

    assert main(["purge", "s1", "--reason", "user asked", "--data-dir", str(tmp_path)]) == 0
    assert _files_holding(tmp_path, MARKER) == []

    assert main(["verify", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ERASED: session 's1'" in out and "OK:" in out and "BROKEN" not in out
    kv = _store(tmp_path)
    try:
        report = verify(kv, quiet=True, scratch=Path(tempfile.gettempdir()))
        assert report.ok and report.erased == ["s1"]
        assert digest(kv) == _replayed_digest(kv, "r2")  # replay gives the erased views byte for byte
        engine = Engine(kv)
        entries, _ = engine.queries.context("s1", 0, 100)
        appended = [e for e in entries if e.context_type != "system"]
        assert appended and all(e.erased and e.content == "" and e.metadata == {} for e in appended)
        session = engine.session_view("s1")
        assert session is not None and session.erased and session.metadata == {}
        summary = engine.summary_view("s1")
        assert summary is not None and summary.last_message is None and summary.decisions == []
    finally:
        kv.close()
    capsys.readouterr()
    assert main(["audit", "s1", "--data-dir", str(tmp_path)]) == 0  # the timeline holds; packages are erased
    timeline = capsys.readouterr().out
    assert "message #2 (erased)" in timeline and "[erased: cannot be re-derived]" in timeline
    assert MARKER not in timeline and "SessionErased" in timeline
    assert main(["export", "--data-dir", str(tmp_path), "--out", str(tmp_path / "log.jsonl")]) == 0
    assert MARKER.encode() not in (tmp_path / "log.jsonl").read_bytes()


def test_purge_refuses_an_unknown_session_and_an_erased_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _with_engine(tmp_path, _Clock(), lambda engine: _write_session(engine, "s1"))
    assert main(["purge", "nope", "--reason", "r", "--data-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["purge", "s1", "--reason", "r", "--data-dir", str(tmp_path)]) == 0
    assert main(["purge", "s1", "--reason", "r", "--data-dir", str(tmp_path)]) == 2
    assert "already erased" in capsys.readouterr().err


def test_retention_erases_a_session_its_policy_days_after_it_ended_and_not_before(tmp_path: Path) -> None:
    clock = _Clock()

    def body(engine: Engine) -> None:
        _write_session(engine, "s1")
        engine.write_now([RegisterSession(session_key="s2", agent_from="carol", retention_policy="short")])
        engine.write_now([AppendContext(session_key="s2", context_type="message", content=MARKER + "-short")])
        engine.write_now([CloseSession(session_key="s2", agent="carol")])
        ended = clock.now
        engine.write_now([RegisterSession(session_key="live", agent_from="dan")])

        async def sweep(at: str) -> dict[str, int]:
            await engine.start()
            try:
                return await engine.erase_due(at)
            finally:
                await engine.stop()

        assert asyncio.run(sweep(plus_seconds(ended, 7 * DAY - 1)))["erased"] == 0
        assert asyncio.run(sweep(plus_seconds(ended, 7 * DAY)))["erased"] == 1  # short: 7 days
        assert engine.session_view("s2").erased and not engine.session_view("s1").erased  # type: ignore[union-attr]
        assert asyncio.run(sweep(plus_seconds(ended, 30 * DAY)))["erased"] == 1  # standard: 30 days (s1 completed)
        assert asyncio.run(sweep(plus_seconds(ended, 300 * DAY)))["erased"] == 0  # never twice; active ones never
        assert engine.state("live").erased is False  # type: ignore[union-attr]

    _with_engine(tmp_path, clock, body)
    assert _files_holding(tmp_path, MARKER) == []
    kv = _store(tmp_path)
    try:
        report = verify(kv, quiet=True, scratch=Path(tempfile.gettempdir()))
        assert report.ok and sorted(report.erased) == ["s1", "s2"]
        assert digest(kv) == _replayed_digest(kv, "r")
    finally:
        kv.close()


def _legacy_session(kv: RocksKeyValue, key: str) -> None:
    """A session as the package wrote it before erasure existed: no data key, content in the clear in the log."""
    from handoff.kernel.decide import Ctx, execute_encoded
    from handoff.storage import log as L
    from projections.replay import fold_events

    ids = iter(range(1, 100))
    ctx = Ctx(now="2026-11-01T09:00:00.000Z", new_id=lambda: f"legacy-{next(ids)}")
    state, writes, envs = None, [], []
    for position, command in enumerate(
        [
            RegisterSession(session_key=key, agent_from="alice"),
            AppendContext(session_key=key, context_type="message", content="legacy words"),
        ],
        start=1,
    ):
        state, env, record = execute_encoded(state, command, ctx)
        L.add_event_writes(writes, position, key, env.version, record)
        envs.append(env)
    assert state is not None and not state.encrypted
    writes += [(L.state_key(key), L.encode_state(state)), (L.POSITION_KEY, b"2")]
    kv.write(writes)
    fold_events(kv, envs)


def test_a_log_mixing_sessions_from_before_erasure_with_new_ones_reads_verifies_and_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kv = _store(tmp_path)
    _legacy_session(kv, "old")
    engine = Engine(kv)
    engine.write_now([AppendContext(session_key="old", context_type="message", content="more legacy words")])
    _write_session(engine, "new")
    entries, _ = engine.queries.context("old", 0, 100)
    assert [e.content for e in entries[1:]] == ["legacy words", "more legacy words"]
    assert b"more legacy words" in engine.log.record("old", 3)  # a session without a key stays in the clear
    assert verify(kv, quiet=True, scratch=Path(tempfile.gettempdir())).ok
    assert digest(kv) == _replayed_digest(kv, "r")
    kv.close()
    assert main(["purge", "old", "--reason", "r", "--data-dir", str(tmp_path)]) == 2
    assert "written before erasure existed" in capsys.readouterr().err
    assert main(["purge", "new", "--reason", "r", "--data-dir", str(tmp_path)]) == 0
    assert main(["verify", "--data-dir", str(tmp_path)]) == 0


def test_purge_beside_a_running_engine_goes_through_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from handoff.audit.purge import SPOOL, serve_purge_requests

    kv = _store(tmp_path)

    async def scenario() -> None:
        engine = Engine(kv)
        await engine.start()
        spool = asyncio.create_task(serve_purge_requests(engine.submit, tmp_path / SPOOL, every=0.05))
        try:
            await engine.submit(RegisterSession(session_key="s1", agent_from="alice"))
            await engine.submit(AppendContext(session_key="s1", context_type="message", content=MARKER))
            purge = ["purge", "s1", "--reason", "user asked", "--data-dir", str(tmp_path), "--json"]
            assert await asyncio.to_thread(main, purge) == 0  # the store is locked by this engine
            assert '"erased": true' in capsys.readouterr().out
            assert await asyncio.to_thread(main, purge) == 2
            assert "already erased" in capsys.readouterr().err
            view = engine.session_view("s1")
            assert view is not None and view.erased and view.status == "closed"
            assert list((tmp_path / SPOOL).iterdir()) == []  # every request answered and cleared
        finally:
            spool.cancel()
            await engine.stop()

    try:
        asyncio.run(scenario())
    finally:
        kv.close()
    assert _files_holding(tmp_path, MARKER) == []


def test_the_retention_job_erases_by_the_configured_days_through_update_configuration(tmp_path: Path) -> None:
    """`update_configuration` of ``retention.eraseAfterDays`` is what the `retention` job erases by."""
    from handoff.bootstrap import jobs

    clock = _Clock()

    def body(engine: Engine) -> None:
        engine.write_now([RegisterSession(session_key="s3", agent_from="erin", retention_policy="short")])
        engine.write_now([AppendContext(session_key="s3", context_type="message", content=MARKER + "-configured")])
        engine.write_now([CloseSession(session_key="s3", agent="erin")])
        ended = clock.now
        operations, _ = jobs.embedded_jobs(engine, None)

        async def run_retention_at(at: str) -> dict[str, int]:
            clock.now = at
            await engine.start()
            try:
                return (await operations.run_job_now("retention", "operator")).result
            finally:
                await engine.stop()

        two_days = plus_seconds(ended, 2 * DAY)
        assert asyncio.run(run_retention_at(two_days))["erased"] == 0  # short: 7 days by default
        asyncio.run(operations.update_configuration("retention", {"eraseAfterDays": {"short": 1}}, None, "operator"))
        assert asyncio.run(run_retention_at(two_days)) == {"checked": 1, "erased": 1, "refused": 0}
        assert engine.state("s3").erased  # type: ignore[union-attr]

    _with_engine(tmp_path, clock, body)
    assert _files_holding(tmp_path, MARKER) == []
