"""Settings from the environment and the command line, and process tuning; used only by the composition roots."""

from __future__ import annotations

import argparse
import fcntl
import gc
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import platformdirs

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_SPAWN_IDLE_EXIT = 300.0  # seconds an auto-spawned engine lingers without clients


@dataclass(frozen=True)
class Env:
    """What the ``HANDOFF_*`` environment variables say; command-line options override it."""

    data_dir: Path
    kafka_bootstrap: str | None
    log_level: str
    fast_path: bool = True  # HANDOFF_FAST_PATH=0: every /mcp request goes through the SDK
    kafka_accel: bool = True  # HANDOFF_KAFKA_ACCEL=0: Kafka through aiokafka's public API only


KAFKA_UNREACHABLE = (
    "cannot reach Kafka; is the broker running, and is --kafka (or HANDOFF_KAFKA_BOOTSTRAP) its address?"
)


class KafkaUnreachable(Exception):
    """Kafka could not be reached when a Kafka-mode process (`serve --kafka`, `handoff worker`) started."""


def kafka_connect_timeout(environ: Mapping[str, str]) -> float:
    """How long a Kafka-mode process may take to reach Kafka at start-up (``HANDOFF_KAFKA_CONNECT_TIMEOUT``, 30 s)."""
    return float(environ.get("HANDOFF_KAFKA_CONNECT_TIMEOUT") or 30)


def try_exclusive(path: Path) -> IO[str] | None:
    """Take an exclusive lock if nobody holds the file locked; None otherwise."""
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def default_data_dir() -> Path:
    """The platform's user data dir + ``/handoff``."""
    return Path(platformdirs.user_data_dir()) / "handoff"


def read_env(environ: Mapping[str, str] | None = None) -> Env:
    """Settings from the ``HANDOFF_*`` variables: DATA_DIR, KAFKA_BOOTSTRAP, LOG_LEVEL, FAST_PATH, KAFKA_ACCEL."""
    env = os.environ if environ is None else environ
    data_dir = env.get("HANDOFF_DATA_DIR") or None
    return Env(
        data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
        kafka_bootstrap=env.get("HANDOFF_KAFKA_BOOTSTRAP") or None,
        log_level=(env.get("HANDOFF_LOG_LEVEL") or "INFO").upper(),
        fast_path=switched_on(env.get("HANDOFF_FAST_PATH")),
        kafka_accel=switched_on(env.get("HANDOFF_KAFKA_ACCEL")),
    )


def switched_on(value: str | None) -> bool:
    """An on/off variable: on unless it says 0, false, no or off."""
    return (value or "1").strip().lower() not in {"0", "false", "no", "off"}


@dataclass(frozen=True)
class DataDir:
    """The files an engine keeps in its data directory."""

    root: Path

    @property
    def db(self) -> Path:
        """The RocksDB database (log and projections)."""
        return self.root / "db"

    @property
    def engine_json(self) -> Path:
        """Where a running HTTP engine advertises its URL and pid."""
        return self.root / "engine.json"

    @property
    def engine_lock(self) -> Path:
        """Held while a `handoff stdio` decides whether to start an engine."""
        return self.root / "engine.lock"

    @property
    def clients_lock(self) -> Path:
        """Shared-locked by every live `handoff stdio`; an idle engine exits only when it can lock it."""
        return self.root / "clients.lock"

    @property
    def secret(self) -> Path:
        """256 random bits (0600) that the shared engine and its relays prove to each other."""
        return self.root / "engine.secret"

    @property
    def engine_log(self) -> Path:
        """Stdout and stderr of an auto-spawned engine."""
        return self.root / "engine.log"


def keep_gc_off_the_hot_path(young: int, older: tuple[int, int]) -> None:
    """Freeze what start-up built out of the cyclic GC's scans; collect the young generation per `young` allocations.

    A long-running server's garbage is freed by reference counting (cycles are rare), so its
    collections mostly re-scan live objects: fewer, over fewer objects, is less time and fewer pauses.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, *older)


def tune_gc_for_serving() -> None:
    """`handoff serve`'s collector settings: keep the cyclic GC off the request path.

    Under a write load it cost ~50 µs per MCP call. Everything built at start-up (modules, the SDK's
    pydantic models, the tool schemas: ~90,000 tracked objects) is frozen out of the collector's
    scans, and the youngest generation is collected every 20,000 allocations instead of 700
    (measured: GC time under the 16-client bench roughly halved). Benchmarks that stand in for
    `serve` call it too, so that they measure the collector `serve` runs with.
    """
    keep_gc_off_the_hot_path(20_000, (20, 20))


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (processes, transactions), with a clear refusal."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
