"""Bearer tokens (CONTRACT §7): issued once, kept only as SHA-256 hashes, with their agent, role and expiry.

`TokenStore` is the port `handoff token` and ``serve --auth token`` use. `FileTokenStore` keeps the
tokens of a data dir in ``tokens.json`` (0600, replaced atomically under a lock file, so the CLI can
write while `serve` runs); a reader re-reads it when its stat changes, checking at most once per
`recheck` seconds, so a revocation reaches every running `serve` within that time (1 s by default,
well inside the 5 s of the contract). The file is separate from RocksDB because RocksDB allows only
one process per directory and `serve` holds it. Kafka mode keeps the same records on a
compacted ``<prefix>.tokens`` topic, keyed by token id (`streams.tokens.KafkaTokenStore`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import msgspec

from handoff.kernel.principal import RESERVED_AGENT, ROLES, Principal, Role
from handoff.kernel.types import AgentId

TOKEN_PREFIX = "hnd_"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


_AGENT = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,100}$")
_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One issued token, as stored: never the token itself, only its hash."""

    id: str
    sha256: str
    agent: str
    role: Role = "agent"
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None

    def public(self) -> dict[str, str | None]:
        """What `handoff token list` shows (no hash)."""
        return {
            "id": self.id,
            "agent": self.agent,
            "role": self.role,
            "expiresAt": self.expires_at,
            "createdAt": self.created_at,
            "revokedAt": self.revoked_at,
        }

    def live(self, now: datetime) -> bool:
        """Neither revoked nor expired at `now`."""
        return self.revoked_at is None and (self.expires_at is None or datetime.fromisoformat(self.expires_at) > now)


class TokenFile(msgspec.Struct, kw_only=True):
    """The content of ``tokens.json``."""

    version: int = 1
    tokens: list[TokenRecord] = []


class TokenError(ValueError):
    """A token command was given something it cannot use (unknown id, bad name, bad duration)."""


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` or plain seconds."""
    match = _DURATION.match(text.strip())
    if match is None or int(match[1]) <= 0:
        raise TokenError(f"not a duration: {text!r} (e.g. 3600, 90m, 12h, 30d)")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def check_agent(agent: str, role: str) -> None:
    """The agent-name and role rules every principal obeys."""
    if not _AGENT.match(agent):
        raise TokenError("an agent name is 1-100 characters without control characters")
    if agent == RESERVED_AGENT:
        raise TokenError(f"{RESERVED_AGENT!r} is the engine's own actor; no principal may be named so")
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}")


def issue(agent: str, role: Role, ttl: timedelta | None, now: datetime) -> tuple[TokenRecord, str]:
    """A new token (256 random bits) and the record that keeps its hash."""
    check_agent(agent, role)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(
        id="tok_" + secrets.token_hex(8),
        sha256=hash_token(token),
        agent=agent,
        role=role,
        created_at=_iso(now),
        expires_at=None if ttl is None else _iso(now + ttl),
    )
    return record, token


def revoked(record: TokenRecord, now: datetime) -> TokenRecord:
    """The record revoked at `now` (revoking twice keeps the first time)."""
    return record if record.revoked_at is not None else msgspec.structs.replace(record, revoked_at=_iso(now))


class TokenIndex:
    """Token records by id and by hash, as a store's reader last saw them."""

    def __init__(self, records: list[TokenRecord] | None = None) -> None:
        self.by_id: dict[str, TokenRecord] = {}
        self.by_hash: dict[str, TokenRecord] = {}
        for record in records or ():
            self.apply(record)

    def apply(self, record: TokenRecord) -> None:
        """Add or replace a record (the newest version of an id wins)."""
        old = self.by_id.get(record.id)
        if old is not None:
            self.by_hash.pop(old.sha256, None)
        self.by_id[record.id] = record
        self.by_hash[record.sha256] = record

    def principal(self, token: str, now: datetime) -> tuple[Principal, TokenRecord] | None:
        """The principal of a live token."""
        record = self.by_hash.get(hash_token(token))
        if record is None or not record.live(now):
            return None
        return Principal(agent=AgentId(record.agent), role=record.role), record


class TokenLookup(Protocol):
    """What `serve` needs of a token store: the principal of a token, current within a few seconds."""

    def principal(self, token: str) -> tuple[Principal, TokenRecord] | None:
        """The principal of a live token; None for an unknown, expired or revoked one."""


class TokenStore(Protocol):
    """Where tokens are issued, listed, revoked and looked up."""

    def create(self, agent: str, role: Role, ttl: timedelta | None) -> tuple[TokenRecord, str]:
        """Issue a token; returns its record and the token (the only time it is seen)."""

    def records(self) -> list[TokenRecord]:
        """Every token issued, revoked and expired ones included."""

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token by id (TokenError if unknown)."""

    def principal(self, token: str) -> tuple[Principal, TokenRecord] | None:
        """The principal of a live token, seen as of at most `recheck` seconds ago; None otherwise."""


class FileTokenStore:
    """The tokens of one data dir, in ``tokens.json``; safe to share between processes."""

    def __init__(
        self,
        path: Path,
        *,
        recheck: float = 1.0,
        clock: Callable[[], datetime] = _now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.recheck = recheck
        self.clock, self.monotonic = clock, monotonic
        self._stat: tuple[int, int, int] | None = None
        self._checked = -float("inf")
        self._index = TokenIndex()

    # reading

    def _read(self) -> TokenFile:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return TokenFile()
        return msgspec.json.decode(raw, type=TokenFile)

    def _refresh(self, force: bool = False) -> None:
        now = self.monotonic()
        if not force and now - self._checked < self.recheck:
            return
        self._checked = now
        try:
            st = self.path.stat()
            stat: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stat = None
        if stat != self._stat:
            self._index = TokenIndex(self._read().tokens)
            self._stat = stat

    def principal(self, token: str) -> tuple[Principal, TokenRecord] | None:
        """The principal of a live token (see `TokenStore.principal`)."""
        self._refresh()
        found = self._index.principal(token, self.clock())
        if found is None and hash_token(token) not in self._index.by_hash:
            self._refresh(force=True)  # perhaps issued a moment ago: a stat is cheap, a re-read happens only on change
            found = self._index.principal(token, self.clock())
        return found

    def records(self) -> list[TokenRecord]:
        """Every token issued."""
        return self._read().tokens

    # writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[TokenFile]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._read()
        finally:
            os.close(fd)  # releases the lock

    def _write(self, content: TokenFile) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.format(msgspec.json.encode(content)))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self._checked = -float("inf")  # this process sees its own change at once

    def create(self, agent: str, role: Role, ttl: timedelta | None) -> tuple[TokenRecord, str]:
        """Issue a token (see `TokenStore.create`)."""
        record, token = issue(agent, role, ttl, self.clock())
        with self._locked() as content:
            content.tokens.append(record)
            self._write(content)
        return record, token

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token (see `TokenStore.revoke`); revoking twice keeps the first time."""
        with self._locked() as content:
            for i, record in enumerate(content.tokens):
                if record.id == token_id:
                    if record.revoked_at is None:
                        record = content.tokens[i] = revoked(record, self.clock())
                        self._write(content)
                    return record
        raise TokenError(f"no token has the id {token_id!r}")


def data_dir_store(root: Path, *, recheck: float = 1.0) -> FileTokenStore:
    """The token store of a data dir."""
    return FileTokenStore(root / "tokens.json", recheck=recheck)
