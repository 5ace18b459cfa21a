"""Receipts: what a write returned, kept per idempotency key so a retry gets the first answer."""

from __future__ import annotations

import hashlib

import msgspec

from handoff.kernel.commands import Command, fingerprint
from handoff.kernel.errors import IdempotencyMismatch
from handoff.kernel.events import HANDOFF_EVENTS, Envelope
from handoff.kernel.state import HandoffState, SessionState


class SessionSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The session fields a write result reports, as they were right after the write."""

    session_key: str
    status: str
    version: int
    agent_from: str
    holder: str
    created_at: str
    updated_at: str
    metadata: dict[str, object] = {}


class Receipt(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The outcome of an accepted command; with its event it determines the tool's result."""

    fingerprint: str
    version: int
    session: SessionSnapshot
    handoff: HandoffState | None = None


def command_digest(command: Command) -> str:
    """SHA-256 of the command's arguments, idempotency key and expected version left out."""
    return hashlib.sha256(fingerprint(command)).hexdigest()


def receipt_of(state: SessionState, env: Envelope, digest: str) -> Receipt:
    """The receipt of the write that produced `env` and left the session in `state`."""
    event = env.event
    handoff = None
    if isinstance(event, HANDOFF_EVENTS):
        handoff = state.handoffs[event.handoff_id]
    return Receipt(
        fingerprint=digest,
        version=env.version,
        session=SessionSnapshot(
            session_key=state.session_key,
            status=state.status,
            version=state.version,
            agent_from=state.agent_from,
            holder=state.holder,
            created_at=state.created_at,
            updated_at=state.updated_at,
            metadata=state.metadata,
        ),
        handoff=handoff,
    )


def check_retry(receipt: Receipt, command: Command) -> None:
    """A retry must repeat the first call's arguments exactly; raise IdempotencyMismatch if not.

    A receipt rebuilt by ``handoff import`` has no fingerprint (the log does not keep arguments) and
    accepts any retry with its key.
    """
    if receipt.fingerprint and receipt.fingerprint != command_digest(command):
        raise IdempotencyMismatch(
            f"idempotencyKey {command.idempotency_key!r} was first used with different arguments",
            idempotencyKey=command.idempotency_key,
        )
