"""Finding or starting the one engine of a data dir, so that many `handoff stdio` share it.

Protocol, all under the data dir:

* ``engine.lock`` (exclusive) is held by a `handoff stdio` while it decides whether to spawn.
* ``clients.lock`` is held *shared* by every live `handoff stdio` for its whole life. An idle
  auto-spawned engine exits only after taking it *exclusively* (so never while a client lives),
  and keeps it until the process ends, so a client arriving meanwhile waits and then spawns anew.
* ``engine.json`` ``{"url", "pid"}`` is written by a running HTTP engine and removed when it stops.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import IO

from handoff.config import DataDir
from handoff.mcp import localtrust

log = logging.getLogger(__name__)

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EngineStartError(RuntimeError):
    """The engine could not be started or did not become healthy in time."""


def advertise(data: DataDir, url: str) -> None:
    """Write ``engine.json`` atomically."""
    tmp = data.engine_json.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    tmp.replace(data.engine_json)


def withdraw(data: DataDir) -> None:
    """Remove ``engine.json`` if it is still ours."""
    try:
        if json.loads(data.engine_json.read_text()).get("pid") == os.getpid():
            data.engine_json.unlink()
    except (OSError, ValueError):
        pass


def proof_url(url: str, challenge: str) -> str:
    """The local-proof URL beside an /mcp URL, with a challenge."""
    return url.removesuffix("/mcp") + f"{localtrust.PROOF_PATH}?challenge={challenge}"


def live_engine(data: DataDir) -> str | None:
    """The URL ``engine.json`` names, if the engine there proves it holds the data dir's secret.

    A stale ``engine.json`` (the engine was killed) may name a port that another account has taken
    since; that process cannot answer the challenge, so it is never relayed to.
    """
    try:
        info = json.loads(data.engine_json.read_text())
        url, pid = str(info["url"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    challenge = localtrust.new_challenge()
    try:
        with _NO_PROXY.open(proof_url(url, challenge), timeout=2) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503: unhealthy, but it is the engine that holds the data dir
        with exc:
            try:
                body = json.loads(exc.read())
            except (OSError, ValueError):
                return None
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("pid") != pid:
        return None
    if not localtrust.proven(localtrust.read_secret(data.secret), challenge, body.get("proof")):
        log.warning(
            "the process at the advertised address cannot prove it is this data dir's engine",
            extra={"url": url},
        )
        return None
    return url


def spawn(data: DataDir, idle_exit: float, codebase_roots: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Start `handoff serve` on a free loopback port, detached, logging to ``engine.log``."""
    argv = [sys.executable, "-m", "handoff", "serve", "--data-dir", str(data.root), "--port", "0"]
    argv += ["--idle-exit", str(idle_exit), "--local-secret"]
    for root in codebase_roots:
        argv += ["--codebase-root", root]
    argv += ["--auth", "none"]  # its callers are stdio relays on loopback: a HANDOFF_AUTH for serve must not bar them
    with data.engine_log.open("ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)


def wait_healthy(data: DataDir, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Poll until the spawned engine advertises itself and answers; raise if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = live_engine(data)
        if url is not None:
            return url
        if proc.poll() is not None:
            raise EngineStartError(f"the engine exited with code {proc.returncode}; see {data.engine_log}")
        time.sleep(0.05)
    raise EngineStartError(f"the engine did not become healthy within {timeout:.0f}s; see {data.engine_log}")


LOCK_DEADLINE = 30.0  # an engine starts in about a second; 30 s of waiting means something is stuck


class LockTimeout(EngineStartError):
    """A lock of the data dir stayed held past its deadline."""


def _lock_within(handle: IO[str], mode: int, deadline: float, path: object) -> None:
    """Flock `handle` in `mode`, or raise LockTimeout once `deadline` seconds have passed."""
    end = time.monotonic() + deadline
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= end:
                raise LockTimeout(
                    f"{path} has been locked by another process for {deadline:.0f}s; if no `handoff stdio` or "
                    "engine of this data dir is running, that process is stuck: end it, or use another --data-dir"
                ) from None
            time.sleep(0.05)


def ensure_engine(
    data: DataDir,
    idle_exit: float,
    timeout: float = 60.0,
    while_starting: Callable[[], object] = lambda: None,
    lock_deadline: float = LOCK_DEADLINE,
    codebase_roots: Sequence[str] = (),
) -> tuple[str, IO[str]]:
    """The URL of the data dir's engine (started if needed) and this client's lease on it.

    `while_starting` runs while a freshly spawned engine boots (e.g. to import the relay meanwhile).
    An engine it starts gets `codebase_roots`; one already running keeps the roots it was started with.
    """
    localtrust.secure_data_dir(data.root)
    localtrust.read_secret(data.secret)
    with data.engine_lock.open("a+") as decision:
        _lock_within(decision, fcntl.LOCK_EX, lock_deadline, data.engine_lock)
        lease = data.clients_lock.open("a+")
        try:
            _lock_within(lease, fcntl.LOCK_SH, lock_deadline, data.clients_lock)
            url = live_engine(data)
            if url is None:
                log.info("starting an engine", extra={"dataDir": str(data.root)})
                proc = spawn(data, idle_exit, codebase_roots)
                while_starting()
                url = wait_healthy(data, proc, timeout)
        except BaseException:
            lease.close()
            raise
        log.info("relaying to the engine", extra={"url": url})
        return url, lease
