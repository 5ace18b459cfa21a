"""Audit and replay over a real RocksDB store: verify, its tamper detection, replay, audit, export/import."""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from handoff.audit import parallel, trail, transfer
from handoff.audit.parallel import replay_store_in_parallel, store_shares, verify_store_in_parallel
from handoff.audit.replay import replay
from handoff.audit.transfer import export_lines, import_lines
from handoff.audit.verify import session_prefixes, verify
from handoff.cli import main
from handoff.engine.engine import Engine
from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    Command,
    CompleteHandoff,
    RegisterSession,
    RequestHandoff,
)
from handoff.kernel.errors import InvalidArgument
from handoff.storage import keys
from handoff.storage.digest import digest
from handoff.storage.keys import VIEW_PREFIXES
from handoff.storage.kv import InMemoryKeyValue, RocksKeyValue
from handoff.storage.log import EventLog, event_key
from projections.queries import Queries

SESSIONS = 100
EVENTS_PER_SESSION = 100


def _script() -> list[Command]:
    """10,000 events over 100 sessions, with handoffs here and there."""
    commands: list[Command] = []
    for s in range(SESSIONS):
        key = f"audit-{s:03d}"
        commands.append(RegisterSession(session_key=key, agent_from=f"agent-{s % 5}", metadata={"n": s}))
        for i in range(EVENTS_PER_SESSION - 1):
            kind = ("message", "decision", "task", "file")[i % 4]
            if i % 33 == 32:
                commands.append(RequestHandoff(session_key=key, target_agent=f"helper-{i % 3}", token_budget=400))
            else:
                commands.append(AppendContext(session_key=key, context_type=kind, content=f"{kind} {i} of {key} " * 3))
    return commands


def _build(path: Path) -> None:
    kv = RocksKeyValue(str(path))
    engine = Engine(kv, sync=False)
    script = _script()
    for start in range(0, len(script), 1000):
        for result in engine.write_now(script[start : start + 1000]):
            assert not isinstance(result, Exception), result
    kv.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "db"
    _build(path)
    return path


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Iterator[RocksKeyValue]:
    """A private copy of the 10,000-event store that a test may tamper with."""
    copy = tmp_path / "db"
    shutil.copytree(pristine, copy)
    kv = RocksKeyValue(str(copy))
    yield kv
    kv.close()


def test_verify_passes_on_a_healthy_store_of_10000_events_over_100_sessions(store: RocksKeyValue, tmp_path: Path):
    report = verify(store, scratch=tmp_path, quiet=True)
    assert report.ok, report.problems
    assert (report.events, report.sessions) == (SESSIONS * EVENTS_PER_SESSION, SESSIONS)
    assert report.live_digest == report.fresh_digest == digest(store)


def test_verify_names_the_session_and_version_of_a_flipped_byte(store: RocksKeyValue, tmp_path: Path):
    record = store.get(event_key("audit-042", 57))
    assert record is not None
    at = record.index(b'"encrypted":"') + 20  # inside the content's ciphertext
    store.write([(event_key("audit-042", 57), record[:at] + bytes([record[at] ^ 0x01]) + record[at + 1 :])])
    report = verify(store, scratch=tmp_path, quiet=True)
    assert not report.ok
    first = report.problems[0]
    assert (first.session, first.version) == ("audit-042", 57)
    assert "hash mismatch" in first.what


def test_verify_names_a_deleted_event(store: RocksKeyValue, tmp_path: Path):
    store.write([(event_key("audit-007", 30), None)])
    first = verify(store, scratch=tmp_path, quiet=True).problems[0]
    assert (first.session, first.version) == ("audit-007", 30)
    assert "missing" in first.what


def test_verify_names_a_deleted_last_event(store: RocksKeyValue, tmp_path: Path):
    store.write([(event_key("audit-008", EVENTS_PER_SESSION), None)])
    first = verify(store, scratch=tmp_path, quiet=True).problems[0]
    assert (first.session, first.version) == ("audit-008", EVENTS_PER_SESSION)


def test_verify_names_a_reordered_pair(store: RocksKeyValue, tmp_path: Path):
    a, b = store.get(event_key("audit-013", 20)), store.get(event_key("audit-013", 21))
    store.write([(event_key("audit-013", 20), b), (event_key("audit-013", 21), a)])
    first = verify(store, scratch=tmp_path, quiet=True).problems[0]
    assert (first.session, first.version) == ("audit-013", 20)


def test_verify_names_a_projection_edited_behind_the_engines_back(store: RocksKeyValue, tmp_path: Path):
    raw = store.get(keys.session_key("audit-099"))
    assert raw is not None
    view = msgspec.msgpack.decode(raw)
    view["agentFrom"] = "mallory"
    store.write([(keys.session_key("audit-099"), msgspec.msgpack.encode(view))])
    report = verify(store, scratch=tmp_path, quiet=True)
    first = report.problems[0]
    assert first.session == "audit-099" and first.version == EVENTS_PER_SESSION
    assert "agentFrom" in first.what and "mallory" in first.what
    assert report.live_digest != report.fresh_digest


def test_verify_names_a_context_entry_edited_behind_the_engines_back(store: RocksKeyValue, tmp_path: Path):
    raw = store.get(keys.context_key("audit-050", 12))
    assert raw is not None
    entry = msgspec.msgpack.decode(raw)
    entry["content"] = "something the agent never wrote"
    store.write([(keys.context_key("audit-050", 12), msgspec.msgpack.encode(entry))])
    report = verify(store, scratch=tmp_path, quiet=True)
    first = report.problems[0]
    assert first.session == "audit-050" and "context entry 12 differs" in first.what and "never wrote" in first.what
    assert report.live_digest == digest(store) != report.fresh_digest


@pytest.mark.parametrize(
    ("change", "expected"),
    [("delete", "context entry 30 is missing from the live store"), ("add", "context entry 9999 exists in the live")],
)
def test_verify_names_a_context_entry_missing_or_added_behind_the_engines_back(
    store: RocksKeyValue, tmp_path: Path, change: str, expected: str
):
    if change == "delete":
        store.write([(keys.context_key("audit-061", 30), None)])
    else:
        store.write([(keys.context_key("audit-061", 9999), store.get(keys.context_key("audit-061", 30)))])
    for session in (None, "audit-061"):
        report = verify(store, session=session, scratch=tmp_path, quiet=True)
        first = report.problems[0]
        assert first.session == "audit-061" and expected in first.what, first
        prefixes = VIEW_PREFIXES if session is None else session_prefixes(session)
        assert report.live_digest == digest(store, prefixes) != report.fresh_digest


def _flip(store: RocksKeyValue) -> None:
    record = store.get(event_key("audit-042", 57))
    assert record is not None
    at = record.index(b'"encrypted":"') + 20
    store.write([(event_key("audit-042", 57), record[:at] + bytes([record[at] ^ 0x01]) + record[at + 1 :])])


def _edit_view(store: RocksKeyValue) -> None:
    raw = store.get(keys.session_key("audit-099"))
    assert raw is not None
    view = {**msgspec.msgpack.decode(raw), "holder": "x"}
    store.write([(keys.session_key("audit-099"), msgspec.msgpack.encode(view))])


def _edit_entry(store: RocksKeyValue) -> None:
    raw = store.get(keys.context_key("audit-050", 12))
    assert raw is not None
    entry = {**msgspec.msgpack.decode(raw), "content": "never written"}
    store.write([(keys.context_key("audit-050", 12), msgspec.msgpack.encode(entry))])


TAMPERINGS = {
    "none": lambda store: None,
    "flipped byte": _flip,
    "deleted event": lambda store: store.write([(event_key("audit-007", 30), None)]),
    "deleted last event": lambda store: store.write([(event_key("audit-070", EVENTS_PER_SESSION), None)]),
    "edited session view": _edit_view,
    "edited context entry": _edit_entry,
    "deleted context entry": lambda store: store.write([(keys.context_key("audit-061", 30), None)]),
    "added context entry": lambda store: store.write([(keys.context_key("audit-001", 999), b"\x80")]),
    "deleted global position": lambda store: store.write([(next(store.scan(b"G:"))[0], None)]),
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_a_verify_by_several_processes_reports_what_one_process_reports(
    store: RocksKeyValue, tmp_path: Path, tampering: str
):
    TAMPERINGS[tampering](store)
    alone = verify(store, scratch=tmp_path, quiet=True)
    together = verify_store_in_parallel(store, jobs=3, scratch=tmp_path, quiet=True)
    assert together is not None
    assert together.to_dict() | {"seconds": 0} == alone.to_dict() | {"seconds": 0}
    assert together.ok == (tampering == "none")


def test_verify_of_one_session_checks_only_that_session(store: RocksKeyValue, tmp_path: Path):
    store.write([(event_key("audit-001", 3), None)])
    assert verify(store, session="audit-002", scratch=tmp_path, quiet=True).ok
    assert not verify(store, session="audit-001", scratch=tmp_path, quiet=True).ok


def test_replaying_twice_gives_identical_views_equal_to_the_live_ones(store: RocksKeyValue, tmp_path: Path):
    first, second = RocksKeyValue(str(tmp_path / "r1")), RocksKeyValue(str(tmp_path / "r2"))
    a, b = replay(store, first, quiet=True), replay(store, second, quiet=True)
    assert a.events == b.events == SESSIONS * EVENTS_PER_SESSION
    assert a.digest == b.digest == digest(store)
    assert list(first.scan(b"")) == list(second.scan(b""))  # byte-identical, key by key


@pytest.mark.parametrize("jobs", [2, 3])
def test_a_replay_by_several_processes_writes_the_bytes_one_process_writes(
    store: RocksKeyValue, tmp_path: Path, jobs: int
):
    shares = store_shares(store, jobs)
    assert len(shares) == jobs and shares[0].start == b"E:" and shares[-1].end == b"E;"
    assert all(a.end == b.start for a, b in zip(shares, shares[1:], strict=False))  # contiguous, no gap
    alone, together = RocksKeyValue(str(tmp_path / "r1")), RocksKeyValue(str(tmp_path / "r2"))
    one = replay(store, alone, quiet=True)
    several = replay_store_in_parallel(store, together, jobs=jobs, scratch=tmp_path, quiet=True)
    assert several.events == one.events == SESSIONS * EVENTS_PER_SESSION
    assert several.digest == one.digest == digest(store)
    assert list(together.scan(b"")) == list(alone.scan(b""))


def test_replay_refuses_a_store_that_is_not_empty(store: RocksKeyValue):
    with pytest.raises(InvalidArgument):
        replay(store, store, quiet=True)


def test_the_replay_command_builds_the_store_under_its_final_name_only_when_whole(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    data = tmp_path / "data"
    shutil.copytree(pristine, data / "db")
    target = tmp_path / "views"
    assert main(["replay", "--data-dir", str(data), "--to", str(target), "--quiet"]) == 0
    replayed = RocksKeyValue(str(target), read_only=True)
    assert f"views digest {digest(replayed)}" in capsys.readouterr().out
    replayed.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "views"]  # nothing left beside it
    assert main(["replay", "--data-dir", str(data), "--to", str(target), "--quiet"]) == 2
    assert "is not an empty directory" in capsys.readouterr().err


def test_a_failed_replay_leaves_nothing_behind_and_can_simply_run_again(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    data = tmp_path / "data"
    shutil.copytree(pristine, data / "db")
    kv = RocksKeyValue(str(data / "db"))
    good = kv.get(event_key("audit-050", 7))
    kv.write([(event_key("audit-050", 7), b"not an event")])  # half the log folds before this record
    kv.close()
    target = tmp_path / "views"
    target.mkdir()  # an empty directory is a fine target
    assert main(["replay", "--data-dir", str(data), "--to", str(target), "--quiet"]) == 2
    assert "undecodable" in capsys.readouterr().err
    assert list(target.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["data", "views"]
    kv = RocksKeyValue(str(data / "db"))
    kv.write([(event_key("audit-050", 7), good)])
    kv.close()
    assert main(["replay", "--data-dir", str(data), "--to", str(target), "--quiet"]) == 0


def test_an_interrupted_replay_says_so_in_one_line_and_leaves_nothing(
    pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    shutil.copytree(pristine, tmp_path / "data" / "db")

    def interrupted(source: object, target: RocksKeyValue, **kwargs: object) -> None:
        target.write([(b"S:half", b"written")])
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel, "replay_store", interrupted)
    assert main(["replay", "--data-dir", str(tmp_path / "data"), "--to", str(tmp_path / "views")]) == 130
    assert capsys.readouterr().err == "handoff replay: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_replay_refuses_an_until_version_below_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(["replay", "--data-dir", str(tmp_path / "data"), "--to", str(tmp_path / "views"), "--until-version", "0"])
    assert exited.value.code == 2
    assert "argument --until-version: must be at least 1, not 0" in capsys.readouterr().err
    assert not (tmp_path / "views").exists()


@pytest.mark.parametrize("version", [1, 2, 34, 67, EVENTS_PER_SESSION])
def test_replay_until_a_version_equals_as_of_version_reads(store: RocksKeyValue, tmp_path: Path, version: int):
    target = RocksKeyValue(str(tmp_path / "until"))
    replay(store, target, until_version=version, quiet=True)
    engine = Engine(store)
    replayed = Queries(target, EventLog(store))  # a replay holds views: entries read their content from the log
    for key in ("audit-000", "audit-050", "audit-099"):
        as_of = engine.as_of(key, version)
        assert replayed.session(key) == as_of.session(key)
        assert replayed.reader.summary(key) == as_of.reader.summary(key)
        assert replayed.context(key, 0, 1000) == as_of.context(key, 0, 1000)


def test_audit_shows_three_handoff_packages_each_re_derived_and_verified(store: RocksKeyValue):
    steps = list(trail.timeline(EventLog(store), "audit-021"))
    checks = [s.package for s in steps if s.package is not None]
    assert len(checks) == 3
    for check in checks:
        assert check.ok and check.recorded_sha256 == check.derived_sha256
        assert check.token_budget == 400 and check.estimated_tokens <= 400
    text = trail.render_text("audit-021", steps)
    assert text.count("[verified]") == 3
    assert [s.version for s in steps] == list(range(1, EVENTS_PER_SESSION + 1))


def test_audit_flags_a_package_that_no_longer_matches_the_log(tmp_path: Path):
    kv = RocksKeyValue(str(tmp_path / "db"))
    engine = Engine(kv, sync=False)
    engine.write_now(
        [
            RegisterSession(session_key="s", agent_from="a"),
            AppendContext(session_key="s", context_type="message", content="before the handoff"),
        ]
    )
    engine.write_now([RequestHandoff(session_key="s", target_agent="b")])
    engine.write_now([AcceptHandoff(session_key="s", handoff_id=_only_handoff(kv), agent="b")])
    engine.write_now([CompleteHandoff(session_key="s", handoff_id=_only_handoff(kv), agent="b")])
    # rewrite history before the request, re-sealing every record so that the chain itself still holds
    log = EventLog(kv)
    envs = list(log.stream("s"))
    forged = msgspec.structs.replace(envs[1].event, content="something else")
    _reseal(kv, envs, 1, forged)
    check = next(s.package for s in trail.timeline(EventLog(kv), "s") if s.package is not None)
    assert not check.ok


def _only_handoff(kv: RocksKeyValue) -> str:
    [(key, _)] = list(kv.scan(b"H:"))
    return key[2:].decode()


def _reseal(kv: RocksKeyValue, envs: list, index: int, event: object) -> None:
    from handoff.kernel.codec import encode_envelope, seal

    prev = envs[index - 1].hash
    writes = []
    for i, env in enumerate(envs[index:], start=index):
        env = seal(msgspec.structs.replace(env, prev_hash=prev, event=event if i == index else env.event))
        prev = env.hash
        writes.append((event_key(env.session_key, env.version), encode_envelope(env)))
    kv.write(writes)


def test_export_then_import_into_a_fresh_store_verifies_and_reads_the_same(store: RocksKeyValue, tmp_path: Path):
    lines = b"".join(line + b"\n" for line in export_lines(store))
    fresh = RocksKeyValue(str(tmp_path / "fresh"))
    result = import_lines(fresh, io.BytesIO(lines))
    assert (result.events, result.sessions) == (SESSIONS * EVENTS_PER_SESSION, SESSIONS)
    assert verify(fresh, scratch=tmp_path, quiet=True).ok
    assert digest(fresh) == digest(store)
    before, after = Queries(store), Queries(fresh)
    assert after.list_sessions(None, None, 1000, None) == before.list_sessions(None, None, 1000, None)
    assert after.list_handoffs("helper-1", None, "pending", 50, None) == before.list_handoffs(
        "helper-1", None, "pending", 50, None
    )
    assert after.context("audit-064", 10, 20) == before.context("audit-064", 10, 20)
    fresh.close()


@pytest.fixture
def exported(pristine: Path, tmp_path: Path) -> Path:
    """The 10,000-event store exported by the CLI to a file."""
    shutil.copytree(pristine, tmp_path / "source" / "db")
    out = tmp_path / "log.jsonl"
    assert main(["export", "--data-dir", str(tmp_path / "source"), "--out", str(out)]) == 0
    return out


def test_the_import_command_builds_the_store_under_its_final_name_only_when_whole(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    data = tmp_path / "imported"

    def fail(*args: object, **kwargs: object) -> int:
        raise OSError("No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(transfer, "fold_events", fail)  # the log and the states are written; the views fail
        assert main(["import", "--data-dir", str(data), "--in", str(exported)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not (data / "db").exists() and [p.name for p in data.iterdir()] == []  # no half-imported store
    assert main(["import", "--data-dir", str(data), "--in", str(exported)]) == 0
    assert main(["verify", "--data-dir", str(data)]) == 0
    assert main(["import", "--data-dir", str(data), "--in", str(exported)]) == 2
    assert "is not empty; import into a fresh data dir" in capsys.readouterr().err


def test_import_takes_the_place_of_a_store_that_holds_nothing(exported: Path, tmp_path: Path):
    data = tmp_path / "imported"
    RocksKeyValue(str(data / "db")).close()  # an engine started once and never written to
    assert main(["import", "--data-dir", str(data), "--in", str(exported)]) == 0
    assert main(["verify", "--data-dir", str(data)]) == 0


def test_import_into_a_data_dir_an_engine_has_open_says_to_stop_it(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    data = tmp_path / "serving"
    engine = RocksKeyValue(str(data / "db"))  # as `handoff serve` holds it
    try:
        assert main(["import", "--data-dir", str(data), "--in", str(exported)]) == 2
    finally:
        engine.close()
    assert "an engine has it open: stop it first" in capsys.readouterr().err


def test_import_with_nothing_piped_in_says_how_to_give_the_lines_instead_of_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(Terminal()))
    assert main(["import", "--data-dir", str(tmp_path / "data")]) == 2
    assert "--in FILE, or pipe them in" in capsys.readouterr().err
    assert not (tmp_path / "data" / "db").exists()


def test_verify_says_ok_in_words_that_count_right(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    kv = RocksKeyValue(str(tmp_path / "data" / "db"))
    Engine(kv, sync=False).write_now([RegisterSession(session_key="one", agent_from="a")])
    kv.close()
    assert main(["verify", "--data-dir", str(tmp_path / "data")]) == 0
    assert capsys.readouterr().out.startswith("OK: 1 event in 1 session; every chain and every view holds\n")


def test_each_exported_line_is_a_cloudevent(store: RocksKeyValue):
    line = next(export_lines(store, "audit-003"))
    event = msgspec.json.decode(line)
    assert event["specversion"] == "1.0" and event["subject"] == "audit-003"
    assert event["type"] == "SessionRegistered" and event["source"] == "handoff://sessions/audit-003"
    assert {"id", "time", "data", "handoffhash", "handoffprevhash", "handoffversion"} <= set(event)


def test_import_refuses_a_broken_chain_and_writes_nothing(store: RocksKeyValue, tmp_path: Path):
    lines = [line for line in export_lines(store, "audit-004")]
    del lines[10]
    fresh = InMemoryKeyValue()
    with pytest.raises(InvalidArgument, match="line 11: session 'audit-004' version 12"):
        import_lines(fresh, io.BytesIO(b"\n".join(lines)))
    assert list(fresh.items()) == []


def test_a_log_written_by_the_previous_schema_replays_to_the_same_views_and_verifies(
    store: RocksKeyValue, tmp_path: Path
):
    from handoff.kernel import codec

    old_records = []
    shown = EventLog(store).keys.reveal
    for key, version, record in EventLog(store).all_records():
        wire = msgspec.json.decode(record)
        if "encrypted" in wire["data"]:  # the package wrote content in the clear before erasure existed
            wire["data"] = msgspec.json.decode(codec.encode_data(shown(codec.decode_envelope(record)).event))
            del wire["data"]["encrypted"]
        if wire["type"] == "ContextAppended":
            del wire["data"]["tokens"]
            wire["schemaVersion"] = 1
        old_records.append((key, version, wire))
    # re-chain the records as version 1 of the package would have written them
    writes, prev_by_session = [], {}
    canonical = codec._canonical  # noqa: SLF001 - the encoder of the canonical form
    for key, version, wire in old_records:
        wire["prevHash"] = prev_by_session.get(key, "0" * 64)
        del wire["hash"]
        wire["hash"] = codec.hashlib.sha256(canonical.encode(wire)).hexdigest()
        prev_by_session[key] = wire["hash"]
        writes.append((event_key(key, version), canonical.encode(wire)))
    old = RocksKeyValue(str(tmp_path / "old"))
    old.write(writes)
    old.write([(k, v) for k, v in store.scan(b"G:")] + [(k, v) for k, v in store.scan(b"M:")])
    from handoff.storage import log as L

    old.write(
        [
            (L.state_key(k), L.encode_state(s))
            for k in EventLog(store).session_keys()
            if (s := _state_of(old, k)) is not None
        ]
    )
    rebuilt = RocksKeyValue(str(tmp_path / "rebuilt"))
    replay(old, rebuilt, quiet=True)
    not_entries = tuple(p for p in VIEW_PREFIXES if p != b"C:")
    assert digest(rebuilt, not_entries) == digest(store, not_entries)
    # the old log's entries hold their content in the view (no key), the new one's read it from the log
    assert all(
        Queries(rebuilt, EventLog(old)).context(k, 0, 1000) == Queries(store).context(k, 0, 1000)
        for k in EventLog(store).session_keys()
    )
    old.write(list(rebuilt.scan(b"")))  # give the old store its views, then verify it as a whole
    assert verify(old, scratch=tmp_path, quiet=True).ok


def _state_of(kv: RocksKeyValue, key: str):
    from handoff.kernel.state import evolve

    state = None
    for env in EventLog(kv).stream(key):
        state = evolve(state, env)
    return state


def test_verify_of_one_session_ignores_a_session_whose_key_extends_it(tmp_path: Path):
    kv = RocksKeyValue(str(tmp_path / "db"))
    engine = Engine(kv, sync=False)
    for key in ("k", "k1", "k:1"):
        for result in engine.write_now([RegisterSession(session_key=key, agent_from="alice")]):
            assert not isinstance(result, Exception), result
    engine.write_now([AppendContext(session_key="k1", context_type="message", content="only in k1")])
    for key in ("k", "k1", "k:1"):
        report = verify(kv, session=key, scratch=tmp_path, quiet=True)
        assert report.ok, (key, [str(p) for p in report.problems])
        assert report.sessions == 1 and report.events == (2 if key == "k1" else 1)
    kv.close()


def _forged_line(session_key: str, agent_from: str) -> bytes:
    """A well-chained CloudEvents line of a session registration, with whatever key and name it is given."""
    from handoff.audit.transfer import to_cloudevent
    from handoff.kernel.codec import sealed_record
    from handoff.kernel.events import GENESIS_HASH, SessionRegistered

    event = SessionRegistered(agent_from=agent_from, metadata={})
    _, record = sealed_record(
        event, "e-1", session_key, 1, "2026-12-04T00:00:00.000Z", agent_from, GENESIS_HASH, None, 1
    )
    return to_cloudevent(record)


@pytest.mark.parametrize(
    ("session_key", "agent", "expected"),
    [
        ("k\x00", "alice", "session key"),
        ("k/1", "alice", "session key"),
        ("k", "\u0430lice", "look-alike"),  # Cyrillic а, then Latin
        ("k", "al\u200bice", r"U\+200B"),
        ("k", "alice\u202e", r"U\+202E"),
        ("k", "\x9balice", r"U\+009B"),
    ],
)
def test_import_applies_the_tools_key_and_name_rules_and_writes_nothing(session_key: str, agent: str, expected: str):
    fresh = InMemoryKeyValue()
    with pytest.raises(InvalidArgument, match=expected):
        import_lines(fresh, io.BytesIO(_forged_line(session_key, agent)))
    assert list(fresh.items()) == []


def test_import_takes_a_well_formed_line_of_the_same_shape():
    fresh = InMemoryKeyValue()
    assert import_lines(fresh, io.BytesIO(_forged_line("k", "Пётр"))).events == 1


def test_audit_prints_stored_terminal_escapes_as_visible_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    data = tmp_path / "data"
    kv = RocksKeyValue(str(data / "db"))
    engine = Engine(kv, sync=False)
    engine.write_now([RegisterSession(session_key="esc", agent_from="alice")])
    hidden = "before \x1b[8m hidden \u202e"
    engine.write_now([AppendContext(session_key="esc", context_type="message", content=hidden)])
    kv.close()
    assert main(["audit", "esc", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[8m hidden \\u202e" in out
