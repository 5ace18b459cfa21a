"""Signed anchors: a rewritten and re-hashed history passes verify alone, and fails verify --anchor.

The operations log (job and configuration changes) is a chain of its own: verify checks it, and an
anchor pins its head, so an edited change fails verify and a re-hashed one fails verify --anchor.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import stat
from pathlib import Path

import msgspec
import pytest

from handoff.audit import anchor
from handoff.audit.transfer import data_key_of, export_lines, from_cloudevent, import_lines, to_cloudevent
from handoff.cli import main
from handoff.engine.engine import Engine
from handoff.engine.operations import OperationsLog
from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.operations import (
    ConfigurationUpdated,
    decide_configuration,
    decide_job_config,
    decode_record,
    encode_record,
    seal_hash,
)
from handoff.storage import operations
from handoff.storage.datakeys import DataCipher
from handoff.storage.kv import RocksKeyValue

_sorted = msgspec.json.Encoder(order="sorted")


def _store(data: Path, sessions: int = 5) -> None:
    kv = RocksKeyValue(str(data / "db"))
    engine = Engine(kv, sync=False)
    for s in range(sessions):
        key = f"deal-{s}"
        engine.write_now([RegisterSession(session_key=key, agent_from="alice")])
        for i in range(4):
            price = "$10" if (s, i) == (2, 1) else f"item {i}"
            engine.write_now([AppendContext(session_key=key, context_type="decision", content=f"price: {price}")])
    kv.close()


def _rewrite(lines: list[bytes], old: str, new: str) -> list[bytes]:
    """The attack: change one event's content, then re-hash every chain so that each one holds again.

    The content is encrypted under its session's data key, which the export carries: the attacker
    opens it, edits it and seals it again.
    """
    out, prev = [], {}
    keys = dict(found for found in map(data_key_of, lines) if found is not None)
    for line in lines:
        if data_key_of(line) is not None:
            out.append(line)
            continue
        wire = msgspec.json.decode(from_cloudevent(line))
        key = wire["sessionKey"]
        wire["prevHash"] = prev.get(key, "0" * 64)
        if wire["type"] == "ContextAppended":
            cipher = DataCipher(keys[key])
            plain = cipher.decrypt(base64.b64decode(wire["data"]["encrypted"]))  # 0x00, then the content alone
            if plain == f"\x00price: {old}".encode():
                sealed = cipher.encrypt(f"\x00price: {new}".encode())
                wire["data"]["encrypted"] = base64.b64encode(sealed).decode()
        del wire["hash"]
        wire["hash"] = prev[key] = hashlib.sha256(_sorted.encode(wire)).hexdigest()
        out.append(to_cloudevent(_sorted.encode(wire)))
    return out


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    assert main(["anchor", "--new-key", str(tmp_path / "keys")]) == 0
    private, public = tmp_path / "keys" / "anchor.key", tmp_path / "keys" / "anchor.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    return private, public


def _anchor(data: Path, private: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    capsys.readouterr()
    assert main(["anchor", "--key", str(private), "--data-dir", str(data)]) == 0
    out.write_text(capsys.readouterr().out)
    return out


def _verify(data: Path, anchored: Path, public: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["verify", "--data-dir", str(data), "--anchor", str(anchored), "--public-key", str(public)])
    return status, capsys.readouterr().out


def test_a_rewritten_and_rehashed_history_fails_verify_anchor_naming_the_session(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    private, public = keys
    _store(tmp_path / "data")
    anchored = _anchor(tmp_path / "data", private, tmp_path / "anchor.json", capsys)
    kv = RocksKeyValue(str(tmp_path / "data" / "db"), read_only=True)
    lines = list(export_lines(kv))
    kv.close()
    forged = _rewrite(lines, "$10", "$10,000")
    assert forged != lines
    fresh = RocksKeyValue(str(tmp_path / "forged" / "db"))
    import_lines(fresh, io.BytesIO(b"\n".join(forged)))  # every chain holds: import accepts it
    fresh.close()
    capsys.readouterr()
    assert main(["verify", "--data-dir", str(tmp_path / "forged")]) == 0  # and so does verify without an anchor
    status, out = _verify(tmp_path / "forged", anchored, public, capsys)
    assert status == 1
    assert out.startswith("BROKEN: session 'deal-2'") and "rewritten: version 5" in out, out
    status, out = _verify(tmp_path / "data", anchored, public, capsys)
    assert status == 0 and out.startswith("OK"), out


def test_a_log_that_only_grew_since_the_anchor_passes(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    private, public = keys
    _store(tmp_path / "data")
    anchored = _anchor(tmp_path / "data", private, tmp_path / "anchor.json", capsys)
    kv = RocksKeyValue(str(tmp_path / "data" / "db"))
    engine = Engine(kv, sync=False)
    engine.write_now([AppendContext(session_key="deal-0", context_type="message", content="later")])
    engine.write_now([RegisterSession(session_key="deal-new", agent_from="bob")])
    kv.close()
    assert _verify(tmp_path / "data", anchored, public, capsys)[0] == 0


def test_a_tail_cut_off_or_a_session_removed_fails_verify_anchor(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    private, public = keys
    _store(tmp_path / "data")
    anchored = _anchor(tmp_path / "data", private, tmp_path / "anchor.json", capsys)
    kv = RocksKeyValue(str(tmp_path / "data" / "db"), read_only=True)
    lines = list(export_lines(kv))
    kv.close()
    kept = [line for line in lines if b'"subject":"deal-1"' not in line and b'"handoffversion":5' not in line]
    fresh = RocksKeyValue(str(tmp_path / "cut" / "db"))
    import_lines(fresh, io.BytesIO(b"\n".join(kept)))
    fresh.close()
    status, out = _verify(tmp_path / "cut", anchored, public, capsys)
    assert status == 1
    assert "session 'deal-0': the log no longer extends the anchor: cut short: it ends at version 4" in out, out
    assert "session 'deal-1': the log no longer extends the anchor: removed" in out, out


def test_an_anchor_signed_by_another_key_or_edited_is_refused(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    private, public = keys
    _store(tmp_path / "data")
    anchored = _anchor(tmp_path / "data", private, tmp_path / "anchor.json", capsys)
    assert main(["anchor", "--new-key", str(tmp_path / "other")]) == 0
    status = main(
        ["verify", "--data-dir", str(tmp_path / "data"), "--anchor", str(anchored),
         "--public-key", str(tmp_path / "other" / "anchor.pub")]
    )  # fmt: skip
    assert status == 2 and "signature does not verify" in capsys.readouterr().err
    document = json.loads(anchored.read_text())
    document["heads"]["deal-0"][0] = 1
    anchored.write_text(json.dumps(document))
    assert _verify(tmp_path / "data", anchored, public, capsys)[0] == 2


def test_anchors_are_written_to_a_folder_privately(tmp_path: Path, keys: tuple[Path, Path]):
    private, public = keys
    _store(tmp_path / "data", sessions=1)
    kv = RocksKeyValue(str(tmp_path / "data" / "db"), read_only=True)
    from handoff.storage.log import EventLog

    statement = anchor.signed_statement(
        anchor.store_heads(EventLog(kv)), 5, anchor.load_private(private), operations=anchor.store_operations_head(kv)
    )
    kv.close()
    path = anchor.write_file(tmp_path / "anchors", statement)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert anchor.checked_statement(json.loads(path.read_text()), anchor.load_public(public)) == anchor.Anchored(
        {"deal-0": (5, statement["heads"]["deal-0"][1])},  # type: ignore[index]
        (0, "0" * 64),  # no operations recorded yet
    )


# -- the operations log ----------------------------------------------------------------------------


def _operations(data: Path) -> None:
    """Three recorded changes; the second keeps `standard` sessions ten years instead of 30 days."""
    kv = RocksKeyValue(str(data / "db"))
    ops = OperationsLog(kv, lambda: "2026-12-01T10:00:00.000000Z")
    ops.record(decide_job_config(ops.state, "dormancy", None, 600), "operator-1")
    ops.record(decide_configuration(ops.state, "retention", {"eraseAfterDays": {"standard": 3650}}, None), "operator-1")
    ops.record(decide_configuration(ops.state, "monitoring", {"logLevel": "WARNING"}, None), "operator-1")
    kv.close()


def _hide_the_retention_change(data: Path, *, rehash: bool) -> None:
    """The attack: edit change 2 back to 30 days in the store; with `rehash`, seal it and the rest again."""
    kv = RocksKeyValue(str(data / "db"))
    forged, prev = [], "0" * 64
    for _, value in list(operations.stored(kv)):
        record = decode_record(value)
        edited = isinstance(record.event, ConfigurationUpdated) and record.event.section == "retention"
        if edited:
            values = {"eraseAfterDays": {**record.event.values["eraseAfterDays"], "standard": 30}}
            record = msgspec.structs.replace(record, event=msgspec.structs.replace(record.event, values=values))
        if rehash and (edited or forged):
            record = msgspec.structs.replace(record, prev_hash=prev)
            record = msgspec.structs.replace(record, hash=seal_hash(record))
        if edited or (rehash and forged):
            forged.append(record)
        prev = record.hash
    kv.write([(operations.log_key(r.position), encode_record(r)) for r in forged])
    kv.close()


def test_an_operations_record_edited_in_the_store_fails_verify_naming_the_operations_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    data = tmp_path / "data"
    _store(data, sessions=1)
    _operations(data)
    capsys.readouterr()
    assert main(["verify", "--data-dir", str(data)]) == 0
    assert "operations log: 3 records; its chain holds" in capsys.readouterr().out
    _hide_the_retention_change(data, rehash=False)
    assert main(["verify", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BROKEN: operations log position 2: hash is not the hash of the record's content"), out
    assert main(["verify", "--data-dir", str(data), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["operations"] == {"records": 3, "superseded": 0, "ok": False}
    assert [p["operationsPosition"] for p in report["problems"]] == [2]


def test_a_rehashed_operations_log_passes_verify_alone_and_fails_verify_anchor(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    private, public = keys
    data = tmp_path / "data"
    _store(data, sessions=1)
    _operations(data)
    anchored = _anchor(data, private, tmp_path / "anchor.json", capsys)
    document = json.loads(anchored.read_text())
    assert document["format"] == "handoff-anchor/2" and document["operations"][0] == 3
    assert _verify(data, anchored, public, capsys)[0] == 0
    _hide_the_retention_change(data, rehash=True)
    capsys.readouterr()
    assert main(["verify", "--data-dir", str(data)]) == 0  # every link holds again
    status, out = _verify(data, anchored, public, capsys)
    assert status == 1
    assert out.startswith(
        "BROKEN: operations log position 3: the operations log no longer extends the anchor: rewritten: position 3 "
    ), out
    assert document["operations"][1] in out


def test_an_operations_log_cut_short_fails_verify_anchor_and_one_that_grew_passes(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    private, public = keys
    data = tmp_path / "data"
    _store(data, sessions=1)
    _operations(data)
    anchored = _anchor(data, private, tmp_path / "anchor.json", capsys)
    kv = RocksKeyValue(str(data / "db"))
    ops = OperationsLog(kv, lambda: "2026-12-02T10:00:00.000000Z")
    ops.record(decide_job_config(ops.state, "dormancy", None, 900), "operator-2")
    kv.close()
    assert _verify(data, anchored, public, capsys)[0] == 0
    kv = RocksKeyValue(str(data / "db"))
    kv.write([(operations.log_key(4), None), (operations.log_key(3), None)])
    kv.close()
    status, out = _verify(data, anchored, public, capsys)
    assert status == 1
    cut = "cut short: it ends at position 2, the anchor holds it at position 3"
    assert f"operations log position 3: the operations log no longer extends the anchor: {cut}" in out, out


def test_an_anchor_of_format_1_without_the_operations_head_still_verifies(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    private, public = keys
    data = tmp_path / "data"
    _store(data, sessions=2)
    _operations(data)
    document = json.loads(_anchor(data, private, tmp_path / "anchor.json", capsys).read_text())
    old = {k: v for k, v in document.items() if k not in ("signature", "operations")} | {"format": "handoff-anchor/1"}
    signed = anchor.load_private(private).sign(json.dumps(old, sort_keys=True, separators=(",", ":")).encode())
    old["signature"] = {"algorithm": "Ed25519", "value": base64.b64encode(signed).decode()}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert _verify(data, tmp_path / "old.json", public, capsys)[0] == 0
    _hide_the_retention_change(data, rehash=True)  # a format-1 anchor never pinned the operations log
    assert _verify(data, tmp_path / "old.json", public, capsys)[0] == 0
