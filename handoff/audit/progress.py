"""A progress line on stderr for long reads of the log: count, rate, and the total when known."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Counter(Protocol):
    """Whatever counts the items read: a `Progress`, or a share's counter in a process of a parallel run."""

    def advance(self, n: int = 1) -> None:
        """Count `n` more items."""


class Progress:
    """Prints ``<label> 120,000/1,000,000 events (85,000/s)`` at most twice a second, then a final line."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None, quiet: bool = False):
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.count = 0
        self.started = time.perf_counter()
        self._shown = self.started
        self._tty = self.stream.isatty()

    def advance(self, n: int = 1) -> None:
        """Count `n` more items, redrawing the line if half a second has passed."""
        self.count += n
        if self.quiet or (n == 1 and self.count & 255):  # look at the clock every 256 items
            return
        now = time.perf_counter()
        if now - self._shown >= 0.5:
            self._shown = now
            self._write(self._line(now), final=False)

    def _line(self, now: float) -> str:
        rate = self.count / max(now - self.started, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        bar = ""
        if self.total:
            done = min(self.count / self.total, 1.0)
            bar = "[" + "#" * int(done * 30) + "." * (30 - int(done * 30)) + f"] {done:4.0%} "
        return f"{self.label} {bar}{self.count:,}{of} events ({rate:,.0f}/s)"

    def _write(self, line: str, final: bool) -> None:
        if self._tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        elif final:
            self.stream.write(line + "\n")
        self.stream.flush()

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.started

    def rate(self) -> float:
        """Items per second so far."""
        return self.count / max(self.elapsed(), 1e-9)

    def done(self, count: int | None = None) -> None:
        """Print the final count (`count` if the caller knows it better) and rate.

        A total known in advance was an estimate; the final count is exact, so it becomes the total.
        """
        if count is not None:
            self.count = count  # e.g. children's last batches, counted after their last report
        if self.total:
            self.total = self.count  # e.g. Kafka offsets, which also count transaction markers
        if not self.quiet:
            self._write(self._line(time.perf_counter()) + f" in {self.elapsed():.1f}s", final=True)
