"""The records on the wire: command records (what platforms produce), replies, and dead letters.

A command record is JSON on ``handoff.commands``, keyed by the command's ``sessionKey`` as raw UTF-8::

    {"commandId": "c-123", "replyTo": null,
     "command": {"command": "AppendContext", "sessionKey": "s-1", "contextType": "message", "content": "hi"}}

``commandId`` (1–128 chars) names the command: the same id sent twice is decided once and answered
with the first outcome. ``replyTo`` names the submitter whose reply consumer waits for the decision
on ``handoff.replies`` (null for fire-and-forget platforms: refusals then go to the dead-letter topic).
``replyKey`` (optional) is a fresh 256-bit AES key for this record alone, URL-safe base64: the worker
seals the reply under it (`seal_reply`), so the reply shows nothing but its commandId to anyone without
the command record. A reply carries the event in the clear (entry content, request data, results,
the package summary) and the session's metadata: sealed, it is unreadable once the worker has
deleted the decided command record (`streams.trimming`), at the latest right after an erasure.
`command_record_schema()` is the JSON Schema of this record.

A record may carry a ``decideBy`` header: epoch milliseconds, ASCII digits. A worker that reaches the
record later does not decide it (nothing is written) and answers UNAVAILABLE, or dead-letters it when
nobody waits. `serve --kafka` sets it a margin before it stops waiting, so a call it answered with
UNAVAILABLE never takes effect afterwards (say, once a failed-over worker drains the backlog).
Adapters' and workers' clocks must agree to well within that margin.
"""

from __future__ import annotations

import base64
import os
from typing import Annotated, Any

import msgspec

from handoff.kernel import errors as E
from handoff.kernel.commands import Command
from handoff.kernel.receipt import Receipt
from handoff.kernel.schema import command_schema
from handoff.storage.datakeys import DataCipher

CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_KEY_PATTERN = "^[A-Za-z0-9_-]{43}=$"  # 32 bytes, URL-safe base64
ReplyKey = Annotated[str, msgspec.Meta(pattern=_KEY_PATTERN)]

HEADER_DECIDE_BY = "decideBy"


def decide_by_header(deadline_s: float) -> tuple[str, bytes]:
    """The ``decideBy`` header of a command that must be decided before `deadline_s` (epoch seconds)."""
    return HEADER_DECIDE_BY, b"%d" % int(deadline_s * 1000)


def decide_by(headers: Any) -> int | None:
    """The ``decideBy`` of a record's headers in epoch milliseconds, or None (none, or not a number)."""
    for name, value in headers or ():
        if name == HEADER_DECIDE_BY:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


class CommandRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """One command as produced to ``handoff.commands``."""

    command_id: CommandId
    command: Command
    reply_to: str | None = None
    reply_key: ReplyKey | None = None  # seal the reply under this key (`seal_reply`)


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """A refusal: the contract's error code, its sentence and details."""

    code: str
    message: str
    details: dict[str, Any] = {}


class Reply(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The decision of one command, on ``handoff.replies``: the event and receipt, or the error."""

    command_id: str
    ok: bool
    event: msgspec.Raw = msgspec.Raw()  # the event's canonical wire bytes, embedded as JSON (empty: none)
    receipt: Receipt | None = None
    replayed: bool = False
    partition: int = -1
    offset: int = -1  # unused (read-your-writes now waits on the command record's own offset); kept for old readers
    error: ErrorBody | None = None
    sealed: str = ""  # base64: the whole reply, under its command record's replyKey (`open_reply`)


_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(CommandRecord)
_reply_decoder = msgspec.json.Decoder(Reply)


def encode_command(record: CommandRecord) -> bytes:
    """The JSON of a command record."""
    return _encoder.encode(record)


def decode_command(raw: bytes) -> CommandRecord:
    """Decode a command record; raises msgspec.DecodeError / ValidationError."""
    return _command_decoder.decode(raw)


def encode_reply(reply: Reply) -> bytes:
    """The JSON of a reply."""
    return _encoder.encode(reply)


def decode_reply(raw: bytes) -> Reply:
    """Decode a reply."""
    return _reply_decoder.decode(raw)


def new_reply_key() -> tuple[str, bytes]:
    """A fresh reply key: as a command record carries it, and its bytes."""
    key = os.urandom(32)
    return base64.urlsafe_b64encode(key).decode("ascii"), key


def seal_reply(reply: Reply, reply_key: str) -> Reply:
    """The reply as sent to a submitter that gave a replyKey: only its commandId and outcome in the clear."""
    cipher = DataCipher(base64.urlsafe_b64decode(reply_key))
    sealed = base64.b64encode(cipher.encrypt(encode_reply(reply))).decode("ascii")
    return Reply(command_id=reply.command_id, ok=reply.ok, sealed=sealed)


def open_reply(reply: Reply, key: bytes) -> Reply:
    """The reply a sealed one stands for; raises ValueError if it was not sealed under `key`."""
    if not reply.sealed:
        return reply
    try:
        plain = DataCipher(key).decrypt(base64.b64decode(reply.sealed))
        inner = decode_reply(plain)
    except (msgspec.DecodeError, ValueError) as exc:  # binascii.Error is a ValueError
        raise ValueError(f"the reply to {reply.command_id!r} does not open under its command's key") from exc
    if inner.command_id != reply.command_id:
        raise ValueError(f"the reply to {reply.command_id!r} holds the reply to {inner.command_id!r}")
    return inner


def error_body(exc: E.HandoffError) -> ErrorBody:
    """The wire form of a refusal."""
    return ErrorBody(code=exc.code, message=exc.message, details=dict(exc.details))


def _codes() -> dict[str, type[E.HandoffError]]:
    found: dict[str, type[E.HandoffError]] = {}
    stack: list[type[E.HandoffError]] = [E.HandoffError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return found


_BY_CODE = _codes()


def error_of(body: ErrorBody) -> E.HandoffError:
    """The exception a refusal stands for, raised again on the submitter's side."""
    cls = _BY_CODE.get(body.code, E.HandoffError)
    exc = cls(body.message, **body.details)
    return exc


def command_record_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a command record on ``handoff.commands``."""
    command = command_schema()
    defs = command.pop("$defs", {})
    command.pop("$schema", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "CommandRecord",
        "description": "A command for handoff, produced to handoff.commands keyed by command.sessionKey (UTF-8).",
        "type": "object",
        "properties": {
            "commandId": {"type": "string", "minLength": 1, "maxLength": 128},
            "replyTo": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "replyKey": {"anyOf": [{"type": "string", "pattern": _KEY_PATTERN}, {"type": "null"}]},
            "command": command,
        },
        "required": ["commandId", "command"],
        "additionalProperties": False,
        "$defs": defs,
    }
