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
    """32-hex-digit ids: 48 bits of milliseconds (so ids sort by creation time), then 80 random bits.

    The random bits are drawn and formatted 256 ids at a time, and the millisecond prefix once per
    millisecond: formatting an 80-bit integer per id cost more than the rest of the id.
    """

    _DRAW = 256

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))
        self._ms = -1
        self._prefix = ""
        self._pool = ""
        self._at = 0

    def __call__(self) -> str:
        """A new id."""
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            self._ms = ms
            self._prefix = f"{ms:012x}"
        at = self._at
        if at >= len(self._pool):
            self._pool = f"{self._random.getrandbits(80 * self._DRAW):0{20 * self._DRAW}x}"
            at = 0
        self._at = at + 20
        return self._prefix + self._pool[at : at + 20]
