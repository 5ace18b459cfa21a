"""Crypto-shredding (CONTRACT §8 Erasure): which fields of an event are erasable, hiding them, showing them.

A session registered since erasure exists has a data key of its own. Before an event is sealed into
the hash chain its erasable fields (entry ``content``, ``metadata``, ``requestData``, the recorded
package's ``summary`` and ``keyPoints``, ``result``) move into one ciphertext, the event's
``encrypted`` field, and are left empty in the clear: the chain covers the ciphertext, so it stays
verifiable once the key is destroyed and the content is unreadable for good.

`conceal` hides, `reveal` shows again; both are pure, the cipher (a `FieldCipher`, AES-GCM in
`handoff.storage.datakeys`) comes from the shell. ``encrypted`` tells the three forms apart: a
ciphertext (as the log holds it; revealed without the key, because the session was erased, it stays
so, and the folds show its entries with ``"erased": true``), ``b""`` (shown in the clear, with a key
behind it), and None (written before erasure existed, in the clear in the log too). The field is bytes: the
JSON of the log holds it as standard padded base64, which the codec writes and reads.

The plaintext under the key is the hidden fields' JSON, except for an entry with no metadata (nearly
every update_context): that is one 0x00 byte and the content's UTF-8, with no JSON to escape. JSON
never starts with 0x00, so `reveal` tells the two apart, and entries sealed before the short form
existed open as they always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from handoff.kernel.commands import EraseSession
from handoff.kernel.errors import CodecError
from handoff.kernel.events import (
    ContextAppended,
    Event,
    HandoffCompleted,
    HandoffRequested,
    SessionRegistered,
)
from handoff.kernel.state import SessionState
from handoff.kernel.times import plus_seconds

replace = msgspec.structs.replace

ERASE_AFTER_DAYS: dict[str, int] = {"standard": 30, "extended": 90, "short": 7}  # after expiry/close/complete


class FieldCipher(Protocol):
    """Authenticated encryption under one session's data key."""

    def encrypt(self, plain: bytes) -> bytes:
        """Ciphertext (nonce included) of `plain`."""

    def decrypt(self, sealed: bytes) -> bytes:
        """The plaintext of `sealed`; raises ValueError if it was not made by this key."""

    def encrypt_json(self, plain: bytes) -> bytes:
        """`encrypt`'s ciphertext as the log's JSON holds it: a string of standard padded base64."""


_encode = msgspec.json.Encoder(order="sorted")
_decode = msgspec.json.Decoder(dict[str, Any])
_CONTENT_ONLY = b"\x00"  # the plaintext is an entry's content alone (its metadata is empty)


def _lock(cipher: FieldCipher, fields: dict[str, Any]) -> bytes:
    return cipher.encrypt(_encode.encode(fields))


def _entry_plain(content: str, metadata: dict[str, Any]) -> bytes:
    """What an entry's key encrypts: the content alone if there is no metadata, else both as JSON."""
    if metadata:
        return _encode.encode({"content": content, "metadata": metadata})
    return _CONTENT_ONLY + content.encode()


def _opened(sealed: bytes, cipher: FieldCipher, event_type: str) -> dict[str, Any]:
    """The hidden fields of a ciphertext, its plaintext in either form (CodecError if it does not open)."""
    try:
        plain = cipher.decrypt(sealed)
        if plain[:1] == _CONTENT_ONLY:
            return {"content": plain[1:].decode(), "metadata": {}}
        return _decode.decode(plain)
    except (ValueError, msgspec.DecodeError) as exc:  # UnicodeDecodeError is a ValueError
        raise CodecError(f"{event_type}: its encrypted fields do not open with the session's key") from exc


def opened_entry(sealed: bytes, cipher: FieldCipher) -> tuple[str, dict[str, Any]]:
    """The content and metadata of a ContextAppended's ``encrypted`` field (CodecError if it does not open)."""
    fields = _opened(sealed, cipher, "ContextAppended")
    return fields["content"], fields["metadata"]


def conceal(event: Event, cipher: FieldCipher) -> Event:
    """The event as the log holds it: its erasable fields emptied, their values in ``encrypted``."""
    match event:
        case ContextAppended():
            sealed = cipher.encrypt(_entry_plain(event.content, event.metadata))
            return replace(event, content="", metadata={}, encrypted=sealed)
        case SessionRegistered():
            return replace(event, metadata={}, encrypted=_lock(cipher, {"metadata": event.metadata}))
        case HandoffRequested():
            package = event.package
            hidden = {"requestData": event.request_data, "summary": package.summary, "keyPoints": package.key_points}
            empty = replace(package, summary="", key_points=[])
            return replace(event, request_data={}, package=empty, encrypted=_lock(cipher, hidden))
        case HandoffCompleted():
            return replace(event, result={}, encrypted=_lock(cipher, {"result": event.result}))
        case _:
            return event


def sealed_and_shown(event: Event, cipher: FieldCipher) -> tuple[Event, Event]:
    """`conceal` and `shown` of one event at once: the form the log holds (to encode) and the form the folds get.

    An update_context's event, the hot path's, skips the generic match, and its stored form holds
    the ciphertext already as the base64 text of the record (a `msgspec.Raw`, which the encoder
    copies as it is): msgspec's own base64 of a 1 KiB field cost more than the rest of the sealing.
    The record is byte for byte the one `conceal` gives (a test holds them equal); the stored form
    is only for encoding, as its ``encrypted`` is then not bytes.
    """
    if type(event) is ContextAppended:
        text = cipher.encrypt_json(_entry_plain(event.content, event.metadata))
        stored = replace(event, content="", metadata={}, encrypted=msgspec.Raw(text))
        return stored, replace(event, encrypted=b"")
    return conceal(event, cipher), shown(event)


def shown(event: Event) -> Event:
    """The event in the clear, marked as belonging to a session with a data key (``encrypted == b""``)."""
    if isinstance(event, ContextAppended | SessionRegistered | HandoffRequested | HandoffCompleted):
        return replace(event, encrypted=b"")
    return event


def reveal(event: Event, cipher: FieldCipher | None) -> Event:
    """The event with its erasable fields shown; without the key (erased) it stays as the log holds it."""
    sealed = getattr(event, "encrypted", None)
    if not sealed or cipher is None:
        return event
    fields = _opened(sealed, cipher, type(event).__name__)
    if type(event) is ContextAppended:  # by far the most common: no match
        return replace(event, content=fields["content"], metadata=fields["metadata"], encrypted=b"")
    match event:
        case SessionRegistered():
            return replace(event, metadata=fields["metadata"], encrypted=b"")
        case HandoffRequested():
            package = replace(event.package, summary=fields["summary"], key_points=fields["keyPoints"])
            return replace(event, request_data=fields["requestData"], package=package, encrypted=b"")
        case HandoffCompleted():
            return replace(event, result=fields["result"], encrypted=b"")
        case _:
            return event


def is_erased(event: Event) -> bool:
    """Whether the event's erasable fields are still hidden: its session's key is gone."""
    return bool(getattr(event, "encrypted", None))


def erase_due_at(state: SessionState, erase_after_days: Mapping[str, int] = ERASE_AFTER_DAYS) -> str | None:
    """When retention erases a session: its policy's days after it was closed, completed or expired; else None.

    `erase_after_days` is the configured days per policy (the ``retention`` configuration section).
    None too for a session already erased, and for one from before erasure existed (no key to destroy).
    """
    if state.status == "active" or state.erased or not state.encrypted or not state.updated_at:
        return None
    return plus_seconds(state.updated_at, _days(state, erase_after_days) * 86_400)


def _days(state: SessionState, erase_after_days: Mapping[str, int]) -> int:
    policy = state.retention_policy
    return erase_after_days.get(policy, ERASE_AFTER_DAYS.get(policy, ERASE_AFTER_DAYS["standard"]))


def retention_erasure(
    state: SessionState, now: str, erase_after_days: Mapping[str, int] = ERASE_AFTER_DAYS
) -> EraseSession | None:
    """The command retention issues at `now` for a session, if its time has come (judged at its version)."""
    due = erase_due_at(state, erase_after_days)
    if due is None or due > now:
        return None
    days = _days(state, erase_after_days)
    return EraseSession(
        session_key=state.session_key,
        reason=f"retention: {state.retention_policy} policy erases {days} days after the session ended",
        expected_version=state.version,
    )
