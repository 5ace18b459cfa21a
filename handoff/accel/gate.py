"""Which accelerators may run: each one's tested versions against the installed ones, and its switch.

An accelerator runs only when its switch is on and every distribution it reaches into is installed
at exactly the version it was tested against. Otherwise the public path runs, and the first time a
process asks, one WARNING per accelerator says which version differs (a switch turned off is a
choice, not a problem: that is logged at INFO).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("handoff.accel")


@dataclass(frozen=True)
class Accelerator:
    """A private shortcut: what it reaches into (distribution → tested version) and what runs without it."""

    name: str
    tested: Mapping[str, str]
    public_path: str
    switch: str | None  # the variable that turns it off (None: only the version gate does)

    def __hash__(self) -> int:
        return hash(self.name)


# Only the distributions whose private names an accelerator uses, or whose exact output it reproduces:
# a gate on everything it imports would turn it off for a harmless upgrade of a public API.
_MCP: Final = {"mcp": "2.3.0", "mcp-types": "2.3.0"}
_KAFKA: Final = {"aiokafka": "0.14.0"}

MCP_FAST_PATH: Final = Accelerator(
    "mcp-fast-path",
    {**_MCP, "sse-starlette": "3.7.0"},  # the SDK's SSE replies are framed by sse-starlette; the fast path copies it
    "every /mcp request goes through the SDK's streamable-HTTP transport",
    "HANDOFF_FAST_PATH",
)
UVICORN_COALESCE: Final = Accelerator(
    "uvicorn-coalesce",
    {"uvicorn": "0.54.0", "httptools": "0.9.0"},
    "uvicorn's own httptools protocol writes each reply's head and body separately",
    "HANDOFF_FAST_PATH",
)
UVICORN_GUARD: Final = Accelerator(
    "uvicorn-guard",
    {"uvicorn": "0.54.0", "httptools": "0.9.0"},
    "no header or body deadline; the connection cap answers 503 to requests instead of closing connections",
    None,
)
MCP_SESSION_CLOSE: Final = Accelerator(
    "mcp-session-close",
    _MCP,
    "a 2025-11-25 subscriber that disconnects without unsubscribing is kept (notifying it is a no-op)",
    None,
)
KAFKA_TXN: Final = Accelerator(
    "kafka-txn",
    _KAFKA,
    "deciders commit through aiokafka's producer.transaction()",
    "HANDOFF_KAFKA_ACCEL",
)
KAFKA_FETCH: Final = Accelerator(
    "kafka-fetch",
    _KAFKA,
    "logs are read through a read_committed AIOKafkaConsumer",
    "HANDOFF_KAFKA_ACCEL",
)
KAFKA_OPEN_PROBE: Final = Accelerator(
    "kafka-open-probe",
    _KAFKA,
    "new topics count as open once they have leaders (a first consumer may log a retried error)",
    "HANDOFF_KAFKA_ACCEL",
)
FAUST_READ_COMMITTED: Final = Accelerator(
    "faust-read-committed",
    {**_KAFKA, "faust-streaming": "0.15.3"},
    "the analytics app reads handoff.events read_uncommitted: records of aborted transactions may be counted",
    None,
)
ACCELERATORS: Final = (
    MCP_FAST_PATH,
    UVICORN_COALESCE,
    UVICORN_GUARD,
    MCP_SESSION_CLOSE,
    KAFKA_TXN,
    KAFKA_FETCH,
    KAFKA_OPEN_PROBE,
    FAUST_READ_COMMITTED,
)


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None if it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def mismatch(accel: Accelerator) -> str | None:
    """Why the installed versions rule `accel` out ("aiokafka 0.15.0 is installed, tested: 0.14.0"), or None."""
    differ = []
    for dist, tested in accel.tested.items():
        found = installed_version(dist)
        if found != tested:
            differ.append(f"{dist} {found} is installed, tested: {tested}" if found else f"no {dist} is installed")
    return "; ".join(differ) or None


@functools.cache
def _verdict(accel: Accelerator, switch: bool) -> bool:
    """Decided once per process and accelerator (and switch): so its WARNING is logged once."""
    if not switch:
        log.info("accelerator off by its switch", extra={"accelerator": accel.name, "switch": f"{accel.switch}=0"})
        return False
    why = mismatch(accel)
    if why is not None:
        log.warning(
            "accelerator %s is off: %s; instead %s",
            accel.name, why, accel.public_path, extra={"accelerator": accel.name},
        )  # fmt: skip
        return False
    return True


def enabled(accel: Accelerator, switch: bool = True) -> bool:
    """Whether `accel` runs: its switch is on and the installed versions are the tested ones."""
    return _verdict(accel, switch)


def forget() -> None:
    """Decide again on the next ask (for tests that change what is installed)."""
    _verdict.cache_clear()
