"""Hooks the engine calls with the durations of its store operations (metrics plug in here; the default drops them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter


def _drop(_seconds: float) -> None:
    return None


@dataclass(frozen=True)
class StoreTimings:
    """Where the seconds of one read, one batch write and one log sync go."""

    read: Callable[[float], None] = _drop
    write: Callable[[float], None] = _drop
    sync: Callable[[float], None] = _drop


class Stopwatch:
    """``with Stopwatch(timings.read): ...`` hands the block's duration to the hook (also when it raises)."""

    __slots__ = ("_hook", "_start")

    def __init__(self, hook: Callable[[float], None]) -> None:
        self._hook = hook
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._hook(perf_counter() - self._start)
