"""The token store: tokens shown once and kept hashed; expiry and revocation seen by a running reader in time."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from handoff.kernel.principal import Principal
from handoff.tokens import FileTokenStore, TokenError, hash_token, parse_duration

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clocks:
    """A wall clock and a monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now, self.mono = T0, 0.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def store(path: Path, clocks: Clocks, recheck: float = 1.0) -> FileTokenStore:
    return FileTokenStore(
        path / "tokens.json", recheck=recheck, clock=lambda: clocks.now, monotonic=lambda: clocks.mono
    )


def test_a_token_is_random_long_and_only_its_hash_is_stored(tmp_path: Path, clocks: Clocks) -> None:
    record, token = store(tmp_path, clocks).create("alice", "agent", None)
    other, token2 = store(tmp_path, clocks).create("alice", "agent", None)
    assert token != token2 and record.id != other.id
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    stored = (tmp_path / "tokens.json").read_text()
    assert token not in stored and hash_token(token) in stored
    assert stat.S_IMODE(os.stat(tmp_path / "tokens.json").st_mode) == 0o600


def test_a_live_token_names_its_principal(tmp_path: Path, clocks: Clocks) -> None:
    s = store(tmp_path, clocks)
    _, token = s.create("audra", "auditor", None)
    found = s.principal(token)
    assert found is not None and found[0] == Principal(agent="audra", role="auditor")
    assert s.principal(token + "x") is None


def test_an_expired_token_names_nobody(tmp_path: Path, clocks: Clocks) -> None:
    s = store(tmp_path, clocks)
    _, token = s.create("alice", "agent", timedelta(hours=1))
    assert s.principal(token) is not None
    clocks.advance(3600)
    assert s.principal(token) is None


def test_another_process_sees_a_revocation_within_its_recheck_interval(tmp_path: Path, clocks: Clocks) -> None:
    cli, server = store(tmp_path, clocks), store(tmp_path, clocks, recheck=1.0)
    record, token = cli.create("alice", "agent", None)
    assert server.principal(token) is not None
    cli.revoke(record.id)
    clocks.advance(1.0)
    assert server.principal(token) is None
    assert cli.records()[0].revoked_at is not None


def test_a_token_issued_after_the_last_check_is_seen_at_once(tmp_path: Path, clocks: Clocks) -> None:
    cli, server = store(tmp_path, clocks), store(tmp_path, clocks, recheck=3600)
    assert server.principal("hnd_nothing") is None
    _, token = cli.create("bob", "agent", None)
    assert server.principal(token) is not None


def test_revoking_an_unknown_id_is_an_error(tmp_path: Path, clocks: Clocks) -> None:
    with pytest.raises(TokenError):
        store(tmp_path, clocks).revoke("tok_nope")


@pytest.mark.parametrize("agent", ["system", "", "a" * 101, "bad\x00name", "bell\x07"])
def test_no_principal_may_be_system_empty_too_long_or_have_controls(tmp_path: Path, clocks: Clocks, agent: str) -> None:
    with pytest.raises(TokenError):
        store(tmp_path, clocks).create(agent, "agent", None)
    assert not (tmp_path / "tokens.json").exists()


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000), ("2w", 1209600)]
)
def test_durations_read_as_a_user_writes_them(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0", "-5", "1y", "soon"])
def test_a_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(TokenError):
        parse_duration(text)


def test_the_cli_prints_the_token_once_and_lists_without_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from handoff.cli import main

    assert main(["token", "create", "--agent", "alice", "--json", "--data-dir", str(tmp_path)]) == 0
    created = json.loads(capsys.readouterr().out)
    assert set(created) == {"id", "token", "agent", "role", "expiresAt"}
    assert main(["token", "list", "--json", "--data-dir", str(tmp_path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    assert main(["token", "revoke", created["id"], "--data-dir", str(tmp_path)]) == 0
    assert main(["token", "revoke", "tok_unknown", "--data-dir", str(tmp_path)]) == 2
