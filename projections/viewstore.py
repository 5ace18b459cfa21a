"""Views in a key-value store: their codec, the writes that store a fold's changes, and the reader.

An entry's content is stored once. The context entry of a session with a data key is stored without
its content and metadata (``""`` and ``{}``, its ``contentLength`` kept): the event in the log holds
them, encrypted, and `Queries` reads them from there (`EventLog.entries_fields`). Only the views of a
session without a key (written before erasure existed) hold their content, as the log does in the
clear. So an update_context writes its content once, and no entry view holds a plaintext that
erasure would have to find and overwrite (the summary still keeps short snippets of the last
messages, decisions and open tasks; erasure rewrites it).
"""

from __future__ import annotations

import msgspec

from handoff.storage import keys
from handoff.storage.kv import KeyValue, Write
from projections.projector import Changes
from projections.views import ContextEntryView, HandoffView, SessionView, SummaryView

# Sorted, so a view's bytes do not depend on the key order of a client's metadata: the live engine
# (which folds the command's dicts) and a replay of the log (which folds canonical JSON) agree byte for byte.
_enc = msgspec.msgpack.Encoder(order="sorted")
_dec_session = msgspec.msgpack.Decoder(SessionView)
_dec_summary = msgspec.msgpack.Decoder(SummaryView)
_dec_handoff = msgspec.msgpack.Decoder(HandoffView)
_dec_entry = msgspec.msgpack.Decoder(ContextEntryView)
_replace = msgspec.structs.replace


def decode_entry(value: bytes) -> ContextEntryView:
    """Decode a stored context entry as stored (its content may be in the log: `reads_from_log`)."""
    return _dec_entry.decode(value)


def reads_from_log(entry: ContextEntryView) -> bool:
    """Whether a stored entry's content and metadata are in the log, not in the view (content is never empty)."""
    return not entry.content and entry.content_length > 0 and not entry.erased


def changes_to_writes(changes: Changes, *, content_in_log: bool = True) -> list[Write]:
    """The key-value writes that store `changes`.

    `content_in_log`: the entries of `changes.in_log` are stored without content and metadata (see
    the module docstring). Off only for a store read without its log (an audit's scratch store).
    """
    writes: list[Write] = []
    for key, session in changes.sessions.items():
        writes.append((keys.session_key(key), _enc.encode(session)))
    for key, summary in changes.summaries.items():
        writes.append((keys.summary_key(key), _enc.encode(summary)))
    for hid, handoff in changes.handoffs.items():
        writes.append((keys.handoff_key(hid), _enc.encode(handoff)))
    encode = _enc.encode
    prefixes: dict[str, bytes] = {}
    in_log = changes.in_log if content_in_log else ()
    for (key, seq), entry in changes.entries.items():
        prefix = prefixes.get(key)
        if prefix is None:
            prefix = prefixes[key] = keys.context_prefix(key)
        if in_log and (key, seq) in in_log:
            entry = _replace(entry, content="", metadata={})
        writes.append((keys.context_key_under(prefix, seq), encode(entry)))
    writes.extend((k, None) for k in changes.index_delete)
    writes.extend(changes.index_put.items())
    return writes


class StoreReader:
    """A `ViewReader` that decodes views from a `KeyValue`."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    def session(self, key: str) -> SessionView | None:
        """The stored session view."""
        raw = self.kv.get(keys.session_key(key))
        return None if raw is None else _dec_session.decode(raw)

    def summary(self, key: str) -> SummaryView | None:
        """The stored summary view."""
        raw = self.kv.get(keys.summary_key(key))
        return None if raw is None else _dec_summary.decode(raw)

    def handoff(self, hid: str) -> HandoffView | None:
        """The stored handoff view."""
        raw = self.kv.get(keys.handoff_key(hid))
        return None if raw is None else _dec_handoff.decode(raw)
