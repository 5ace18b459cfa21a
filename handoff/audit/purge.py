"""``handoff purge SESSION --reason TEXT``: an operator erases a session now (CONTRACT §8 Erasure).

The session's data key is destroyed through the session's single writer (an `EraseSession`
command, recorded as a `SessionErased` event with the operator as actor and the reason), its views
are rewritten to the erased form, and the store is compacted so no file under the data dir still
holds its content. Its hash chain stays whole: ``handoff verify`` then reports it ERASED.

In Kafka mode (``--kafka BOOTSTRAP``) the command goes through the commands topic to the worker that owns
the session's partition, which decides it like any other (`handoff.audit.kafka.purge_kafka`).

Beside a running engine (which holds the store's lock) the request goes through that engine: the
command drops it as a file into ``<data-dir>/purge-requests/`` (private, as the whole data dir is:
only its owner, the operator of that engine, can write there) and waits for the engine's answer
beside it; `serve_purge_requests` is the engine's side, run by ``handoff serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from handoff.config import DataDir, Env
from handoff.engine.engine import Engine
from handoff.kernel.commands import EraseSession
from handoff.kernel.errors import HandoffError, InvalidArgument, Unavailable
from handoff.kernel.text import escape_controls
from handoff.kernel.types import AgentId
from handoff.ports import Outcome
from handoff.storage.kv import RocksKeyValue

log = logging.getLogger(__name__)

SPOOL = "purge-requests"  # under the data dir
ANSWER_WITHIN = 60.0  # seconds the command waits for a running engine's answer
_decode_request = msgspec.json.Decoder(EraseSession)


def _write_private(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all (a temporary file renamed into place), readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


async def serve_purge_requests(
    submit: Callable[[EraseSession], Awaitable[Outcome]], spool: Path, every: float = 0.5
) -> None:
    """The running engine's side: decide each request dropped into `spool`, answer it beside it, forever."""
    spool.mkdir(mode=0o700, exist_ok=True)
    while True:
        for request in sorted(spool.glob("*.request")):
            answer = request.with_suffix(".answer")
            try:
                command = _decode_request.decode(request.read_bytes())
                outcome = await submit(command)
                body: dict[str, object] = {"ok": True, "version": outcome.envelope.version}
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                body = {"ok": False, "code": "INVALID_ARGUMENT", "error": f"not a purge request: {exc}"}
            except HandoffError as exc:
                body = {"ok": False, "code": exc.code, "error": exc.message}
            _write_private(answer, json.dumps(body).encode())
            request.unlink(missing_ok=True)
        await asyncio.sleep(every)


def _through_running_engine(root: Path, command: EraseSession) -> int:
    """Hand the command to the engine that holds the store, and wait for its answer; the event's version."""
    spool = root / SPOOL
    if not spool.is_dir():
        raise Unavailable(f"the engine that holds {root} takes no purge requests (it predates them); stop it first")
    name = f"{time.time_ns()}-{secrets.token_hex(4)}"
    _write_private(spool / f"{name}.request", msgspec.json.encode(command))
    answer = spool / f"{name}.answer"
    deadline = time.monotonic() + ANSWER_WITHIN
    while not answer.exists():
        if time.monotonic() > deadline:
            (spool / f"{name}.request").unlink(missing_ok=True)
            raise Unavailable(f"the engine that holds {root} did not answer within {ANSWER_WITHIN:.0f}s")
        time.sleep(0.1)
    body = json.loads(answer.read_bytes())
    answer.unlink(missing_ok=True)
    if not body["ok"]:
        raise InvalidArgument(str(body["error"])) if body["code"] == "INVALID_ARGUMENT" else _refusal(body)
    return int(body["version"])


def _refusal(body: dict[str, object]) -> HandoffError:
    from handoff.kernel import errors

    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, HandoffError) and getattr(cls, "code", None) == body["code"]:
            return cls(str(body["error"]))
    return HandoffError(str(body["error"]))


def operator_name() -> str:
    """The actor recorded for a purge from the command line: the operating-system user, as an operator."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = "unknown"
    return f"operator:{user}"[:100]


async def _erase(kv: RocksKeyValue, command: EraseSession) -> int:
    engine = Engine(kv)
    await engine.start()
    try:
        outcome = await engine.submit(command)
    finally:
        await engine.stop()
    return outcome.envelope.version


def run_purge(ns: argparse.Namespace, env: Env) -> int:
    """Erase one session of an embedded store; 0 once it is erased and compacted away."""
    reason = ns.reason.strip()
    if not reason:
        raise InvalidArgument("--reason must say why the session is erased (it is recorded in the log)")
    bootstrap = ns.kafka or (env.kafka_bootstrap if not ns.data_dir else None)
    if bootstrap:
        return _printed(ns, reason, _purge_kafka(ns, env, bootstrap, reason))
    db = DataDir(ns.data_dir or env.data_dir).db
    if not db.exists():
        raise FileNotFoundError(f"no handoff store at {db}")
    command = EraseSession(session_key=ns.session, reason=reason, actor=AgentId(operator_name()))
    try:
        kv = RocksKeyValue(str(db))
    except Exception as exc:  # rocksdict raises a bare Exception (the lock of a running engine)
        if "lock" not in str(exc).lower():
            raise OSError(f"cannot open the store at {db}: {exc}") from exc
        version = _through_running_engine(db.parent, command)
    else:
        try:
            version = asyncio.run(_erase(kv, command))
        finally:
            kv.close()
    return _printed(ns, reason, version)


def _purge_kafka(ns: argparse.Namespace, env: Env, bootstrap: str, reason: str) -> int:
    """Kafka mode: the command goes to the worker that owns the session's partition (`purge_kafka`)."""
    from handoff.audit.commands import kafka_security  # the --kafka security flags, parsed as the other tools do
    from handoff.audit.kafka import purge_kafka  # Kafka clients only for --kafka

    command = EraseSession(session_key=ns.session, reason=reason, actor=AgentId(operator_name()))
    return purge_kafka(bootstrap, ns.topic_prefix, command, accel=env.kafka_accel, security=kafka_security(ns))


def _printed(ns: argparse.Namespace, reason: str, version: int) -> int:
    if ns.json:
        print(json.dumps({"sessionKey": ns.session, "erased": True, "version": version, "reason": reason}))
    else:
        print(escape_controls(f"erased session {ns.session!r} (event version {version}): {reason}"))
    return 0
