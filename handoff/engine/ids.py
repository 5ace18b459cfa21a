"""The clock and id generator the shell hands to the kernel."""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime


class Clock:
    """The current time as ISO 8601 UTC with milliseconds (``2026-11-27T10:00:00.123Z``).

    Each millisecond is formatted once: the writer asks for the time per command.
    """

    def __init__(self) -> None:
        self._ms = -1
        self._text = ""

    def __call__(self) -> str:
        """The current time, formatted."""
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            self._ms = ms
            self._text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        return self._text


class IdGenerator:
    """32-hex-digit ids: 48 bits of milliseconds (so ids sort by creation time), then 80 random bits."""

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))

    def __call__(self) -> str:
        """A new id."""
        return f"{time.time_ns() // 1_000_000:012x}{self._random.getrandbits(80):020x}"
