"""The load test's progress on stderr: a redrawn bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import anyio

WIDTH = 30


class Progress:
    """``[#########.....]  12.0/20.0 s  8,412 calls  701/s`` on stderr while the load runs."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.total = 0.0
        self.count: Callable[[], int] = lambda: 0
        self.started = time.perf_counter()

    def start(self, total: float, count: Callable[[], int]) -> None:
        """The run begins: `total` seconds long, `count` tells the calls made so far."""
        self.total, self.count, self.started = total, count, time.perf_counter()

    def line(self) -> str:
        """The progress as one line."""
        elapsed = min(time.perf_counter() - self.started, self.total)
        done = elapsed / self.total if self.total else 1.0
        filled = int(done * WIDTH)
        calls = self.count()
        rate = calls / max(elapsed, 1e-9)
        bar = "[" + "#" * filled + "." * (WIDTH - filled) + "]"
        return f"loadtest {bar} {elapsed:5.1f}/{self.total:.1f} s  {calls:,} calls  {rate:,.0f}/s"

    async def run(self) -> None:
        """Redraw four times a second on a terminal, print every five seconds otherwise; until cancelled."""
        if self.quiet:
            return
        while True:
            await anyio.sleep(0.25 if self.tty else 5.0)
            self.write(final=False)

    def write(self, final: bool) -> None:
        """Draw the line (a terminal's is redrawn in place)."""
        if self.tty:
            self.stream.write("\r" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """The last line."""
        if not self.quiet:
            self.write(final=True)
