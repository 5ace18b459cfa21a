"""An entry's content is stored once: in the log, encrypted, for a session with a data key; views read it there."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from handoff.audit.verify import verify
from handoff.engine.engine import Engine
from handoff.kernel.commands import EraseSession
from handoff.kernel.errors import CodecError
from handoff.kernel.types import AgentId
from handoff.storage import keys
from handoff.storage.kv import InMemoryKeyValue
from projections.queries import Queries
from projections.replay import fold_events
from projections.viewstore import decode_entry

from .strategies import Clock, new_ids
from .support import KEY, append, register, request

SECRET = "content-SECRET-42"


def _engine(encrypt: bool = True) -> Engine:
    engine = Engine(InMemoryKeyValue(), clock=Clock(), new_id=new_ids(), sync=False, encrypt=encrypt)
    outcomes = engine.write_now([register(), append(SECRET, metadata={"file": "a.py"}), append(f"{SECRET} again")])
    assert not any(isinstance(o, Exception) for o in outcomes), outcomes
    return engine


def _stored_entries(engine: Engine) -> list[bytes]:
    return [value for _, value in engine.kv.scan(keys.context_prefix(KEY))]


def test_a_keyed_sessions_entry_views_hold_no_content_and_read_it_whole_from_the_log():
    engine = _engine()
    stored = _stored_entries(engine)
    assert len(stored) == 3 and not any(SECRET.encode() in value or b"a.py" in value for value in stored)
    second = decode_entry(stored[1])
    assert (second.content, second.metadata, second.content_length) == ("", {}, len(SECRET))
    entries, _ = engine.queries.context(KEY, 0, 10)
    assert [(e.content, e.metadata) for e in entries[1:]] == [(SECRET, {"file": "a.py"}), (f"{SECRET} again", {})]
    assert entries[0].content.startswith("Session registered")  # a system entry is stored as it reads


def test_a_session_without_a_key_keeps_its_content_in_its_views_as_before():
    engine = _engine(encrypt=False)
    assert SECRET.encode() in _stored_entries(engine)[1]
    entries, _ = engine.queries.context(KEY, 0, 10)
    assert entries[1].content == SECRET


def test_packages_and_as_of_reads_show_the_content_the_log_holds():
    engine = _engine()
    (outcome,) = engine.write_now([request()])
    assert not isinstance(outcome, Exception)
    view = engine.handoff_view(outcome.envelope.event.handoff_id)  # type: ignore[union-attr]
    assert view is not None
    assert SECRET in [e.content for e in engine.queries.package_entries(view)]
    entries, _ = engine.as_of(KEY, 2).context(KEY, 0, 10)
    assert [e.content for e in entries][1:] == [SECRET]


def test_after_erasure_the_entries_read_as_erased_and_no_view_or_log_record_holds_the_content():
    engine = _engine()
    (erased,) = engine.write_now([EraseSession(session_key=KEY, reason="asked", actor=AgentId("operator:root"))])
    assert not isinstance(erased, Exception), erased
    entries, _ = engine.queries.context(KEY, 0, 10)
    assert [(e.content, e.erased) for e in entries[1:]] == [("", True), ("", True)]
    assert not any(SECRET.encode() in value for _, value in engine.kv.scan(b""))


def test_a_replay_stores_the_same_views_and_reads_whole_with_the_log_it_came_from():
    engine = _engine()
    replayed = InMemoryKeyValue()
    fold_events(replayed, engine.log.stream(KEY))
    assert list(replayed.scan(b"C:")) == list(engine.kv.scan(b"C:"))
    assert Queries(replayed, engine.log).context(KEY, 0, 10) == engine.queries.context(KEY, 0, 10)
    with pytest.raises(CodecError, match="event 2 is not in this store"):
        Queries(replayed).context(KEY, 0, 10)  # views alone: the content is nowhere in this store


def _with_content_in_view(engine: Engine, content: str) -> None:
    """Rewrite entry 2 as stores written before entries were stored once hold it: the content in the view."""
    key = keys.context_key(KEY, 2)
    entry = decode_entry(engine.kv.get(key))  # type: ignore[arg-type]
    old = msgspec.structs.replace(entry, content=content, metadata={"file": "a.py"})
    engine.kv.write([(key, msgspec.msgpack.Encoder(order="sorted").encode(old))])


def test_verify_accepts_an_older_stores_entry_view_that_holds_the_content_the_log_holds(tmp_path: Path):
    engine = _engine()
    _with_content_in_view(engine, SECRET)
    assert verify(engine.kv, scratch=tmp_path, quiet=True).ok
    _with_content_in_view(engine, "not what the log holds")
    report = verify(engine.kv, scratch=tmp_path, quiet=True)
    assert not report.ok and "context entry 2 differs" in report.problems[0].what
