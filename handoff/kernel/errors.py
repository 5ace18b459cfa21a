"""The exception tree every layer raises and every adapter maps to a contract error code.

HandoffError                      base; carries a contract ``code`` and a human sentence
├── DomainError                   a rule of the kernel refused the command (nothing written)
│   ├── SessionNotFound           SESSION_NOT_FOUND
│   ├── SessionExists             SESSION_EXISTS
│   ├── SessionNotActive          SESSION_NOT_ACTIVE
│   ├── HandoffNotFound           HANDOFF_NOT_FOUND
│   ├── HandoffConflict           HANDOFF_CONFLICT
│   ├── NotPermitted              NOT_PERMITTED
│   ├── VersionConflict           VERSION_CONFLICT
│   └── IdempotencyMismatch       IDEMPOTENCY_MISMATCH
├── InvalidArgument               INVALID_ARGUMENT (shape, type or value of the input)
│   └── LimitExceeded             LIMIT_EXCEEDED (a configured size or range limit)
├── CodecError                    a stored or received record cannot be decoded (a bug or tampering)
└── Unavailable                   UNAVAILABLE: the log or the workers cannot be reached; retry
"""

from __future__ import annotations

from typing import Any


class HandoffError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "INTERNAL"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable failure body of a refused tool call: success false, code, error, details."""
        return {"success": False, "code": self.code, "error": self.message, **self.details}


class DomainError(HandoffError):
    """A kernel rule refused the command."""


class SessionNotFound(DomainError):
    """The session does not exist."""

    code = "SESSION_NOT_FOUND"


class SessionExists(DomainError):
    """A session with that key already exists."""

    code = "SESSION_EXISTS"


class SessionNotActive(DomainError):
    """The session is completed, closed or expired."""

    code = "SESSION_NOT_ACTIVE"


class HandoffNotFound(DomainError):
    """The handoff does not exist."""

    code = "HANDOFF_NOT_FOUND"


class HandoffConflict(DomainError):
    """The handoff's status does not allow the transition (e.g. already accepted by another agent)."""

    code = "HANDOFF_CONFLICT"


class NotPermitted(DomainError):
    """The agent may not do this."""

    code = "NOT_PERMITTED"


class VersionConflict(DomainError):
    """The session moved past the expectedVersion."""

    code = "VERSION_CONFLICT"


class IdempotencyMismatch(DomainError):
    """An idempotencyKey was reused with different arguments."""

    code = "IDEMPOTENCY_MISMATCH"


class InvalidArgument(HandoffError):
    """The shape, type or value of the input is wrong."""

    code = "INVALID_ARGUMENT"


class LimitExceeded(InvalidArgument):
    """A configured size or range limit was exceeded."""

    code = "LIMIT_EXCEEDED"


class CodecError(HandoffError):
    """A stored or received record cannot be decoded."""

    code = "CODEC_ERROR"


class Unavailable(HandoffError):
    """The log or the workers cannot be reached; nothing was written."""

    code = "UNAVAILABLE"


ERROR_CODES: tuple[str, ...] = (
    "INVALID_ARGUMENT",
    "LIMIT_EXCEEDED",
    "SESSION_NOT_FOUND",
    "SESSION_EXISTS",
    "SESSION_NOT_ACTIVE",
    "HANDOFF_NOT_FOUND",
    "HANDOFF_CONFLICT",
    "NOT_PERMITTED",
    "VERSION_CONFLICT",
    "IDEMPOTENCY_MISMATCH",
    "UNAVAILABLE",
)
