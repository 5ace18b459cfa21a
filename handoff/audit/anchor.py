"""Signed anchors: an Ed25519-signed statement of every chain head, to check the log against later.

Chains are per session, so someone with write access can rewrite an event, re-hash the rest of its
chain and re-import the lot: every chain still holds. An anchor, signed with a key that the writer
does not hold and kept outside the log, pins each session's head as it was: a later log must still
hold, for every anchored session, the anchored version with the anchored hash. A log that only grew
passes; a history rewritten and re-hashed, a tail cut off or a session removed fails, naming the
first such session. The operations log (job and configuration changes) is one more chain and is
pinned the same way: its head's position and hash.

The statement is JSON: ``format``, ``time``, ``position`` (events in the log, or per-partition end
offsets in Kafka mode), ``sessions``, ``digest`` (SHA-256 over every head, in key order), ``heads``
(``{sessionKey: [version, hash]}``) and ``operations`` (``[position, hash]`` of the operations log's
head; ``[0, genesis]`` while it is empty); ``signature`` signs the canonical encoding (sorted keys,
no spaces) of all the rest. Format ``handoff-anchor/1``, written before the operations log was
anchored, has no ``operations`` and still verifies: its sessions are checked, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from handoff.kernel.errors import InvalidArgument
from handoff.kernel.text import escape_controls
from handoff.storage import operations
from handoff.storage.kv import KeyValue
from handoff.storage.log import EventLog

FORMAT = "handoff-anchor/2"
FORMAT_1 = "handoff-anchor/1"  # no operations head; still accepted
Heads = dict[str, tuple[int, str]]  # sessionKey -> (version, hash) of its newest event
OperationsHead = tuple[int, str]  # (position, hash) of the operations log's newest record


@dataclass(frozen=True)
class Anchored:
    """What a checked anchor pins: every session's head, and the operations log's (None in a format-1 anchor)."""

    heads: Heads
    operations: OperationsHead | None


def new_key(folder: Path) -> tuple[Path, Path]:
    """Write a fresh key pair: ``anchor.key`` (PKCS#8 PEM, 0600) and ``anchor.pub``; refuse to overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / "anchor.key", folder / "anchor.pub"
    if private.exists() or public.exists():
        raise InvalidArgument(f"{folder} already holds an anchor key; move it away to make a new one")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, spki))
    return private, public


def load_private(path: Path) -> Ed25519PrivateKey:
    """The signing key at `path`."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgument(f"{path} is not an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """The verifying key at `path`."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidArgument(f"{path} is not an Ed25519 public key")
    return key


def store_heads(log: EventLog) -> Heads:
    """Every session's head, from the decision states the engine keeps beside the log."""
    heads: Heads = {}
    for key in log.session_keys():
        state = log.state(key)
        if state is not None and state.version > 0:
            heads[key] = (state.version, state.last_hash)
    return heads


def digest(heads: Mapping[str, tuple[int, str]]) -> str:
    """SHA-256 over every head, in key order: one value that changes when any head does."""
    h = hashlib.sha256()
    for key in sorted(heads):
        version, head = heads[key]
        h.update(b"%s\0%d\0%s\n" % (key.encode(), version, head.encode()))
    return h.hexdigest()


def _canonical(statement: Mapping[str, object]) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_statement(
    heads: Heads, position: object, key: Ed25519PrivateKey, now: datetime | None = None, *,
    operations: OperationsHead,
) -> dict[str, object]:  # fmt: skip
    """The anchor: the statement of `heads` and the operations log's head at `position`, with its signature."""
    statement: dict[str, object] = {
        "format": FORMAT,
        "time": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "position": position,
        "sessions": len(heads),
        "digest": digest(heads),
        "heads": {k: [v, h] for k, (v, h) in sorted(heads.items())},
        "operations": [operations[0], operations[1]],
    }
    signature = base64.b64encode(key.sign(_canonical(statement))).decode()
    return {**statement, "signature": {"algorithm": "Ed25519", "value": signature}}


def checked_statement(anchor: Mapping[str, object], public: Ed25519PublicKey) -> Anchored:
    """The anchored heads, once the signature and the digest are checked; InvalidArgument otherwise."""
    statement = {k: v for k, v in anchor.items() if k != "signature"}
    kind = statement.get("format")
    if kind not in (FORMAT, FORMAT_1):
        raise InvalidArgument(f"not a {FORMAT} (or {FORMAT_1}) anchor (format {kind!r})")
    signature = anchor.get("signature")
    value = signature.get("value") if isinstance(signature, dict) else None
    try:
        public.verify(base64.b64decode(str(value)), _canonical(statement))
    except (InvalidSignature, ValueError):
        raise InvalidArgument("the anchor's signature does not verify with this public key") from None
    raw = statement.get("heads")
    if not isinstance(raw, dict):
        raise InvalidArgument("the anchor holds no heads")
    heads: Heads = {str(k): (int(v[0]), str(v[1])) for k, v in raw.items()}
    if digest(heads) != statement.get("digest"):
        raise InvalidArgument("the anchor's digest does not match its heads")
    return Anchored(heads, None if kind == FORMAT_1 else _operations_head(statement.get("operations")))


def _operations_head(raw: object) -> OperationsHead:
    """A format-2 anchor's ``operations`` (signed, so only a buggy writer gets this wrong)."""
    if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], int) or not isinstance(raw[1], str):
        raise InvalidArgument("the anchor's operations head is not [position, hash]")
    return raw[0], raw[1]


@dataclass(frozen=True)
class Departure:
    """A session whose log no longer extends its anchored head."""

    session: str
    what: str

    def __str__(self) -> str:
        return escape_controls(f"session {self.session!r}: {self.what}")


def departures(
    heads: Heads, hash_at: Callable[[str, int], str | None], newest: Callable[[str], int]
) -> list[Departure]:
    """Every anchored session the log no longer extends, in key order.

    `hash_at(key, version)` is the hash of that event in today's log (None if absent); `newest(key)` is
    the session's version today (0 if it has no events).
    """
    found: list[Departure] = []
    for key in sorted(heads):
        version, anchored = heads[key]
        now = hash_at(key, version)
        if now == anchored:
            continue
        current = newest(key)
        if current == 0:
            what = f"removed: the anchor holds it at version {version}"
        elif current < version:
            what = f"cut short: it ends at version {current}, the anchor holds it at version {version}"
        else:
            what = f"rewritten: version {version} has hash {now}, the anchor holds {anchored}"
        found.append(Departure(key, what))
    return found


def operations_departure(
    anchored: OperationsHead | None, hash_at: Callable[[int], str | None], newest: int
) -> str | None:
    """How the operations log no longer extends its anchored head, or None when it does.

    `hash_at(position)` is the hash of the record the log holds (applies) at that position today, None
    if none; `newest` is the position of its head today. An empty log at anchor time pins nothing,
    nor does a format-1 anchor (`anchored` None).
    """
    if anchored is None or anchored[0] == 0:
        return None
    position, anchored_hash = anchored
    now = hash_at(position)
    if now == anchored_hash:
        return None
    if newest < position:
        return f"cut short: it ends at position {newest}, the anchor holds it at position {position}"
    return f"rewritten: position {position} has hash {now}, the anchor holds {anchored_hash}"


def store_operations_head(kv: KeyValue) -> OperationsHead:
    """The embedded operations log's head as every process folds it."""
    state = operations.load(kv)
    return state.position, state.head


def store_operations_departure(kv: KeyValue, anchored: OperationsHead | None) -> str | None:
    """`operations_departure` of an embedded store's operations log."""
    newest = max((position or 0 for position, _ in operations.stored(kv)), default=0)

    def hash_at(position: int) -> str | None:
        value = kv.get(operations.log_key(position))
        return None if value is None else _hash_of(value)

    return operations_departure(anchored, hash_at, newest)


def store_departures(log: EventLog, heads: Heads) -> list[Departure]:
    """`departures` of an embedded store's log."""

    def hash_at(key: str, version: int) -> str | None:
        record = log.record(key, version)
        return None if record is None else _hash_of(record)

    def newest(key: str) -> int:
        state = log.state(key)
        return 0 if state is None else state.version

    return departures(heads, hash_at, newest)


class _Hash(msgspec.Struct):
    hash: str = ""


_hash = msgspec.json.Decoder(_Hash)


def _hash_of(record: bytes) -> str | None:
    try:
        return _hash.decode(record).hash or None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def record_heads(records: Iterable[tuple[str, int, bytes]]) -> Heads:
    """Every session's head from a stream of (sessionKey, version, record), e.g. a Kafka events topic."""
    heads: Heads = {}
    for key, version, record in records:
        current = heads.get(key)
        if current is None or version > current[0]:
            heads[key] = (version, _hash_of(record) or "")
    return heads


def write_file(folder: Path, anchor: Mapping[str, object]) -> Path:
    """Write `anchor` to ``folder/anchor-<time>.json`` (0600), atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = str(anchor["time"]).replace(":", "").replace("-", "").split(".")[0] + "Z"
    path = folder / f"anchor-{stamp}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(anchor, out, indent=1, sort_keys=True)
    tmp.replace(path)
    return path
