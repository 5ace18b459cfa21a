"""Crypto-shredding in the kernel and the key store: conceal/reveal, EraseSession, retention timing, DataKeys."""

from __future__ import annotations

import base64
import os

import msgspec
import pytest

from handoff.kernel.codec import sealed_record
from handoff.kernel.commands import EraseSession
from handoff.kernel.decide import Ctx, execute_encoded
from handoff.kernel.erasure import (
    conceal,
    erase_due_at,
    is_erased,
    retention_erasure,
    reveal,
    sealed_and_shown,
    shown,
)
from handoff.kernel.errors import CodecError, InvalidArgument, NotPermitted, SessionNotActive
from handoff.kernel.events import (
    ContextAppended,
    HandoffCompleted,
    HandoffRequested,
    PackageRecord,
    SessionErased,
    SessionRegistered,
)
from handoff.kernel.principal import Principal
from handoff.kernel.state import SessionState
from handoff.kernel.types import AgentId, HandoffId
from handoff.storage.datakeys import DataCipher, DataKeys, _nonces, create_write, destroy_write
from handoff.storage.kv import InMemoryKeyValue
from unit.support import NOW, append, counter, register, request

SECRET = "SECRET-xyz"
PACKAGE = PackageRecord(
    from_sequence=1, to_sequence=2, entry_count=2, token_budget=4000, estimated_tokens=10, sha256="0" * 64,
    summary=f"summary {SECRET}", key_points=[f"point {SECRET}"],
)  # fmt: skip
EVENTS = [
    SessionRegistered(agent_from=AgentId("alice"), metadata={"m": SECRET}),
    ContextAppended(sequence_number=2, context_type="message", content=SECRET, agent=AgentId("a"), tokens=3),
    HandoffRequested(
        handoff_id=HandoffId("h1"),
        sequence_number=3,
        source_agent=AgentId("a"),
        target_agent=AgentId("b"),
        request_type="context_transfer",
        package=PACKAGE,
        request_data={"r": SECRET},
    ),  # fmt: skip
    HandoffCompleted(handoff_id=HandoffId("h1"), agent=AgentId("b"), result={"x": SECRET}),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_a_concealed_event_holds_no_plaintext_and_reveals_to_the_original(event: object) -> None:
    cipher = DataCipher.new()
    hidden = conceal(event, cipher)  # type: ignore[arg-type]
    assert SECRET.encode() not in msgspec.json.encode(hidden) and is_erased(hidden)
    assert reveal(hidden, cipher) == shown(event)  # type: ignore[arg-type]
    assert not is_erased(reveal(hidden, cipher))


@pytest.mark.parametrize("metadata", [{}, {"m": SECRET}], ids=["content alone", "with metadata"])
def test_the_hot_paths_record_is_byte_for_byte_the_one_conceal_gives(
    metadata: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # one nonce for both, so the two ways of sealing compare byte for byte
    monkeypatch.setattr(_nonces, "draw", lambda: (bytes(12), b"A" * 16))
    cipher = DataCipher(bytes(range(32)))
    event = msgspec.structs.replace(EVENTS[1], metadata=metadata)
    stored, clear = sealed_and_shown(event, cipher)
    head = ("e1", "s1", 2, NOW, AgentId("a"), "0" * 64, None, 1)
    assert sealed_record(stored, *head) == sealed_record(conceal(event, cipher), *head)
    assert clear == shown(event)
    assert reveal(conceal(event, cipher), cipher) == shown(event)


def test_an_entry_sealed_before_the_short_form_still_opens() -> None:
    cipher = DataCipher.new()
    legacy = cipher.encrypt(msgspec.json.encode({"content": SECRET, "metadata": {}}))  # every entry until Dec 2026
    hidden = msgspec.structs.replace(EVENTS[1], content="", encrypted=legacy)
    assert reveal(hidden, cipher) == shown(EVENTS[1])


def test_nonces_are_never_handed_out_twice_in_a_process_or_across_a_fork() -> None:
    drawn = [_nonces.draw() for _ in range(3 * 256 + 7)]  # across several refills
    mine = {nonce for nonce, _ in drawn}
    assert len(mine) == 3 * 256 + 7 and all(len(n) == 12 for n in mine)
    assert all(base64.b64encode(nonce) == text for nonce, text in drawn)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it draws next must not be what the parent draws next
        os.write(write, _nonces.draw()[0])
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 12)
    os.close(read), os.close(write)
    assert child != _nonces.draw()[0] and child not in mine


def test_without_the_key_an_event_stays_hidden_and_with_another_key_it_does_not_open() -> None:
    hidden = conceal(EVENTS[1], DataCipher.new())
    assert reveal(hidden, None) is hidden and is_erased(hidden)
    with pytest.raises(CodecError, match="do not open"):
        reveal(hidden, DataCipher.new())


def test_the_cipher_refuses_a_key_of_the_wrong_size_and_altered_ciphertext() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataCipher(b"short")
    cipher = DataCipher.new()
    sealed = bytearray(cipher.encrypt(b"hello"))
    sealed[-1] ^= 1
    with pytest.raises(ValueError, match="does not open"):
        cipher.decrypt(bytes(sealed))


def test_data_keys_are_read_once_cached_and_gone_after_their_destroying_write() -> None:
    kv = InMemoryKeyValue()
    cipher = DataCipher.new()
    kv.write([create_write("s1", cipher)])
    keys = DataKeys(kv)
    assert keys.cipher("s1") is not None and keys.cipher("s1") is keys.cipher("s1")
    kv.write([destroy_write("s1")])
    keys.forget("s1")
    assert keys.cipher("s1") is None and keys.cipher("never") is None


def _keyed_history(cipher: DataCipher, *commands: object) -> SessionState:
    ids = counter("e")
    state = None
    for command in commands:
        state, _, _ = execute_encoded(state, command, Ctx(now=NOW, new_id=ids, package=PACKAGE), cipher)  # type: ignore[arg-type]
    assert state is not None
    return state


def test_erasing_an_active_session_closes_it_and_cancels_its_open_handoffs() -> None:
    state = _keyed_history(DataCipher.new(), register(), append(SECRET), request("bob"))
    new_state, env, record = execute_encoded(
        state,
        EraseSession(session_key="s1", reason="asked", actor=AgentId("operator:root")),
        Ctx(now=NOW, new_id=counter("x")),
    )
    assert isinstance(env.event, SessionErased) and env.event.closed and len(env.event.cancelled_handoffs) == 1
    assert env.actor == "operator:root" and new_state.erased and new_state.status == "closed"
    assert SECRET.encode() not in record
    with pytest.raises(SessionNotActive, match="already erased"):
        execute_encoded(new_state, EraseSession(session_key="s1", reason="again"), Ctx(now=NOW, new_id=counter("y")))


def test_a_session_written_in_the_clear_cannot_be_erased() -> None:
    ids = counter("p")
    state, _, _ = execute_encoded(None, register(), Ctx(now=NOW, new_id=ids))
    with pytest.raises(InvalidArgument, match="before erasure existed"):
        execute_encoded(state, EraseSession(session_key="s1", reason="r"), Ctx(now=NOW, new_id=ids))


def test_only_an_operator_principal_may_erase() -> None:
    state = _keyed_history(DataCipher.new(), register())
    agent = Principal(agent=AgentId("alice"))
    with pytest.raises(NotPermitted, match="not an operator"):
        execute_encoded(
            state, EraseSession(session_key="s1", reason="r", principal=agent), Ctx(now=NOW, new_id=counter("z"))
        )


def test_retention_erases_an_ended_session_exactly_its_policy_days_after_its_last_event() -> None:
    ended = SessionState(session_key="s1", version=3, status="closed", encrypted=True, updated_at=NOW,
                         retention_policy="extended")  # fmt: skip
    assert erase_due_at(ended) == "2027-02-25T10:00:00.000Z"  # 90 days
    assert retention_erasure(ended, "2027-02-25T09:59:59.999Z") is None
    command = retention_erasure(ended, "2027-02-25T10:00:00.000Z")
    assert command is not None and command.expected_version == 3 and command.actor == "system"
    assert erase_due_at(msgspec.structs.replace(ended, status="active")) is None
    assert erase_due_at(msgspec.structs.replace(ended, erased=True)) is None
    assert erase_due_at(msgspec.structs.replace(ended, encrypted=False)) is None
