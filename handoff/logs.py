"""Structured log lines on stderr: ``ts=... level=... logger=... msg=... key=value``."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _quote(value: object) -> str:
    text = str(value)
    if text and not any(c.isspace() or c in '"=' for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class KeyValueFormatter(logging.Formatter):
    """Formats a record as one logfmt line; `extra={...}` fields become ``key=value`` pairs."""

    def format(self, record: logging.LogRecord) -> str:
        """One line per record; exceptions are folded into an ``exc`` field."""
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        pairs: list[tuple[str, Any]] = [
            ("ts", ts),
            ("level", record.levelname),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        pairs += [(k, v) for k, v in record.__dict__.items() if k not in STANDARD_ATTRIBUTES and not k.startswith("_")]
        pairs = [(k, v) for k, v in pairs if k != "color_message"]  # uvicorn's ANSI duplicate of msg
        if record.exc_info:
            pairs.append(("exc", self.formatException(record.exc_info)))
        return " ".join(f"{k}={_quote(v)}" for k, v in pairs)


def configure(level: str) -> None:
    """Send every log record to stderr as structured lines; stdout stays free for JSON-RPC."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level) if isinstance(logging.getLevelName(level), int) else logging.INFO)
    # aiokafka says at INFO every coordinator it discovers and every group step: eight lines per `import --kafka`.
    for noisy in ("uvicorn.access", "httpx", "httpx2", "httpcore", "mcp.server.lowlevel.server", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
