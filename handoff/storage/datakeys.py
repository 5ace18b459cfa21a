r"""Per-session data keys (CONTRACT §8 Erasure): the AES-GCM cipher, and where the embedded store keeps the keys.

    P:<sessionKey>     the session's 256-bit data key (absent: never had one, or erased)

Destroying a key is deleting it and then compacting its range, so no SST or WAL file of the store
still holds it (`RocksKeyValue.compact_all`). A `DataKeys` keeps up to `cache_size` sessions' ciphers
in memory (the longest cached dropped first), so the write path reads a key from disk once, not once
per write.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping

import msgspec
import pybase64
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from handoff.kernel.erasure import reveal
from handoff.kernel.events import Envelope
from handoff.storage.kv import KeyValue, Write

_replace = msgspec.structs.replace

PREFIX = b"P:"
KEY_BYTES = 32
_NONCE = 12


def data_key(session: str) -> bytes:
    """Key of a session's data key."""
    return PREFIX + session.encode()


class _Nonces:
    """Random 96-bit nonces from the system's CSPRNG, read 256 at a time (one system call, not 256).

    Each comes with its base64 text (12 bytes are whole base64 groups: the text of a nonce and a
    ciphertext joined is the text of the two joined). Each is handed out once: a draw is one
    `list.pop`, which is atomic, so two threads never get the same one (two refilling at once each
    pop from the list they made). A forked child drops what its parent had read, so parent and
    child never share a nonce.
    """

    _BATCH = 256

    def __init__(self) -> None:
        self._left: list[tuple[bytes, bytes]] = []
        os.register_at_fork(after_in_child=self.drop)

    def draw(self) -> tuple[bytes, bytes]:
        """A nonce no one else got, and its base64 text."""
        try:
            return self._left.pop()
        except IndexError:
            raw = os.urandom(_NONCE * self._BATCH)
            text = pybase64.b64encode(raw)
            n, t = _NONCE, _NONCE * 4 // 3
            nonces = [raw[i : i + n] for i in range(0, len(raw), n)]
            fresh = list(zip(nonces, [text[i : i + t] for i in range(0, len(text), t)], strict=True))
            self._left = fresh
            return fresh.pop()

    def drop(self) -> None:
        """Forget the nonces read so far (a forked child)."""
        self._left = []


_nonces = _Nonces()


class DataCipher:
    """AES-256-GCM under one session's data key; each ciphertext is a fresh 96-bit nonce + sealed bytes."""

    __slots__ = ("_aead", "key")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a data key is {KEY_BYTES} bytes, not {len(key)}")
        self.key = key
        self._aead = AESGCM(key)

    @classmethod
    def new(cls) -> DataCipher:
        """A cipher under a fresh random key."""
        return cls(AESGCM.generate_key(bit_length=KEY_BYTES * 8))

    def encrypt(self, plain: bytes) -> bytes:
        """Nonce + ciphertext + tag."""
        nonce, _ = _nonces.draw()
        return nonce + self._aead.encrypt(nonce, plain, None)

    def encrypt_json(self, plain: bytes) -> bytes:
        """`encrypt`'s bytes as a JSON string of standard padded base64 (pybase64: SIMD, 5× the stdlib's speed).

        The nonce is 12 bytes, a whole number of base64 groups, so its text and the ciphertext's
        joined are the text of the two joined: no copy of the ciphertext to prepend the nonce.
        """
        nonce, text = _nonces.draw()
        return b"".join((b'"', text, pybase64.b64encode(self._aead.encrypt(nonce, plain, None)), b'"'))

    def decrypt(self, sealed: bytes) -> bytes:
        """The plaintext; ValueError if `sealed` was not made under this key or was altered."""
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], None)
        except InvalidTag as exc:
            raise ValueError("ciphertext does not open under this key") from exc


class DataKeys:
    """The data keys of one store's sessions, their ciphers cached (bounded, least recently used first out)."""

    def __init__(self, kv: KeyValue, cache_size: int = 100_000) -> None:
        self.kv = kv
        self.size = cache_size
        self._ciphers: OrderedDict[str, DataCipher] = OrderedDict()

    def cipher(self, session: str) -> DataCipher | None:
        """The session's cipher, or None if it has no key (written before erasure existed, or erased)."""
        hit = self._ciphers.get(session)
        if hit is not None:
            return hit
        raw = self.kv.get(data_key(session))
        if raw is None:
            return None
        return self.remember(session, DataCipher(raw))

    def remember(self, session: str, cipher: DataCipher) -> DataCipher:
        """Cache a cipher (a new key, once its write is committed, or one read elsewhere)."""
        self._ciphers[session] = cipher
        self._ciphers.move_to_end(session)
        if len(self._ciphers) > self.size:
            self._ciphers.popitem(last=False)
        return cipher

    def reveal(self, env: Envelope) -> Envelope:
        """The envelope with its erasable fields shown, if its session still has its key (else as it is)."""
        event = env.event
        if not getattr(event, "encrypted", None):  # in the clear already: most of a replay's reads
            return env
        cipher = self._ciphers.get(env.session_key) or self.cipher(env.session_key)
        return env if cipher is None else _replace(env, event=reveal(event, cipher))

    def forget(self, session: str) -> None:
        """Drop a destroyed key from memory."""
        self._ciphers.pop(session, None)


def create_write(session: str, cipher: DataCipher) -> Write:
    """The store write that keeps a new session's key."""
    return data_key(session), cipher.key


def destroy_write(session: str) -> Write:
    """The store write that deletes a session's key (compact afterwards to purge it from the files)."""
    return data_key(session), None


def revealer(keys: Mapping[str, bytes]) -> Callable[[Envelope], Envelope]:
    """Shows an event in the clear while its session's key is in `keys` (sessionKey → data key), else as it is.

    For logs whose keys are not in a store: Kafka mode's audit tools read them from ``handoff.keys``.
    """
    ciphers: dict[str, DataCipher] = {}

    def shown(env: Envelope) -> Envelope:
        event = env.event
        if not getattr(event, "encrypted", None):
            return env
        cipher = ciphers.get(env.session_key)
        if cipher is None:
            raw = keys.get(env.session_key)
            if raw is None:
                return env
            cipher = ciphers[env.session_key] = DataCipher(raw)
        return _replace(env, event=reveal(event, cipher))

    return shown
