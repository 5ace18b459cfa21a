"""Golden fixtures: every published event record and command record decodes with today's code."""

from __future__ import annotations

import typing
from pathlib import Path

import msgspec
import pytest

from handoff.kernel.codec import check_record, current_schema_version, decode_envelope
from handoff.kernel.commands import Command
from handoff.kernel.events import EVENT_TYPES

from . import make_fixtures

HERE = Path(__file__).parent
EVENT_FIXTURES = sorted((HERE / "events").glob("*.json"))
COMMAND_FIXTURES = sorted((HERE / "commands").glob("*.json"))
COMMAND_TYPES = {cls.__name__: cls for cls in typing.get_args(Command)}


def _record(path: Path) -> bytes:
    return path.read_bytes().removesuffix(b"\n")


def test_every_event_type_at_its_current_schema_version_has_a_fixture():
    published = {p.name for p in EVENT_FIXTURES}
    missing = [f"{t}.v{current_schema_version(t)}.json" for t in EVENT_TYPES]
    assert [name for name in missing if name not in published] == []


def test_every_command_type_has_a_fixture():
    assert {p.stem for p in COMMAND_FIXTURES} == set(COMMAND_TYPES)


@pytest.mark.parametrize("path", EVENT_FIXTURES, ids=lambda p: p.name)
def test_a_published_event_record_is_genuine(path):
    assert check_record(_record(path)) is None


@pytest.mark.parametrize("path", EVENT_FIXTURES, ids=lambda p: p.name)
def test_a_published_event_record_decodes_to_its_type_and_schema_version(path):
    event_type, version = path.name.removesuffix(".json").split(".v")
    env = decode_envelope(_record(path))
    assert isinstance(env.event, EVENT_TYPES[event_type])
    assert (env.type, env.schema_version) == (event_type, int(version))
    assert env.version >= 1 and len(env.hash) == 64 and len(env.prev_hash) == 64


@pytest.mark.parametrize("path", COMMAND_FIXTURES, ids=lambda p: p.name)
def test_a_published_command_record_decodes_into_the_command_union(path):
    command = msgspec.json.decode(path.read_bytes(), type=Command)
    assert type(command).__name__ == path.stem


def test_the_fixture_generator_never_overwrites_a_published_fixture(tmp_path, capsys):
    make_fixtures.main(tmp_path)
    first = {p: p.read_bytes() for p in tmp_path.rglob("*.json")}
    next(iter(first)).write_bytes(b"edited")
    make_fixtures.main(tmp_path)
    assert f"0 written, {len(EVENT_TYPES) + len(COMMAND_TYPES)} already published" in capsys.readouterr().out
    assert next(iter(first)).read_bytes() == b"edited"
    assert len(first) == len(EVENT_TYPES) + len(COMMAND_TYPES)
