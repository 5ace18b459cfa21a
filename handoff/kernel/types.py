"""Identifier types, enumerations and the configurable size and range limits."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NewType

import msgspec

SessionKey = NewType("SessionKey", str)
HandoffId = NewType("HandoffId", str)
AgentId = NewType("AgentId", str)

# `$(?!\n)`: Python's `$` also matches before a trailing newline; the lookahead closes that gap
# and still reads the same in ECMA regex (JSON Schema).
# Shapes are checked by typed decoding; lengths are checked by `Limits` so they stay configurable
# and so an over-long value is reported as LIMIT_EXCEEDED rather than INVALID_ARGUMENT.
_KEY_SHAPE = msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]+$(?!\n)", description="1-255 chars of A-Za-z0-9._:-")
SessionKeyStr = Annotated[SessionKey, _KEY_SHAPE]
HandoffIdStr = Annotated[HandoffId, _KEY_SHAPE]
AgentStr = Annotated[
    AgentId,
    msgspec.Meta(
        pattern=r"^[^\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]+$(?!\n)",
        description="1-100 chars; no control, bidi or zero-width characters",
    ),
]
ExpectedVersion = Annotated[int, msgspec.Meta(ge=0, description="the session version the caller last saw")]
IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, description="retry key (at most 128 characters)")]
Reason = Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$", max_length=4096)]
JsonObject = dict[str, Any]

ContextType = Literal["message", "file", "tool_call", "system", "decision", "task"]
RequestType = Literal["context_transfer", "full_handoff", "collaboration"]
SessionStatus = Literal["active", "completed", "closed", "expired"]
HandoffStatus = Literal["pending", "accepted", "completed", "rejected", "cancelled", "expired"]
RetentionPolicy = Literal["standard", "extended", "short"]  # CONTRACT §8; TTLs in handoff.kernel.lifecycle
AcceptWithin = Annotated[int, msgspec.Meta(ge=1, le=365 * 86_400, description="seconds a handoff may stay pending")]

CONTEXT_TYPES: tuple[str, ...] = ("message", "file", "tool_call", "system", "decision", "task")
REQUEST_TYPES: tuple[str, ...] = ("context_transfer", "full_handoff", "collaboration")
SESSION_STATUSES: tuple[str, ...] = ("active", "completed", "closed", "expired")
HANDOFF_STATUSES: tuple[str, ...] = ("pending", "accepted", "completed", "rejected", "cancelled", "expired")
OPEN_HANDOFF_STATUSES: frozenset[str] = frozenset({"pending", "accepted"})

DEFAULT_TOKEN_BUDGET = 4000
DEFAULT_ACCEPT_WITHIN = 86_400  # seconds a handoff may stay pending (CONTRACT §8)


class Limits(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Size and range limits (over one: LIMIT_EXCEEDED, nothing written); configuration can override each."""

    key_max: int = 255
    agent_max: int = 100
    content_max_bytes: int = 1024 * 1024
    object_max_bytes: int = 64 * 1024
    idempotency_key_max: int = 128
    token_budget_min: int = 100
    token_budget_max: int = 200_000
    page_max: int = 1000
    participants_max: int = 100  # agents taking part in one session: its decision state stays small
    open_handoffs_max: int = 100  # pending or accepted handoffs of one session
    batch_entries_max: int = 100  # entries of one AppendContextBatch (the filePaths of one analyze_codebase)
    batch_bytes_max: int = 4 * 1024 * 1024  # their content and metadata together: a command record stays small
