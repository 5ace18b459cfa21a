"""``handoff purge SESSION --reason TEXT``: an operator erases a session now (CONTRACT §8 Erasure).

The session's data key is destroyed through the session's single writer (an `EraseSession`
command, recorded as a `SessionErased` event with the operator as actor and the reason), its views
are rewritten to the erased form, and the store is compacted so no file under the data dir still
holds its content. Its hash chain stays whole: ``handoff verify`` then reports it ERASED.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json

from handoff.config import DataDir, Env
from handoff.engine.engine import Engine
from handoff.kernel.commands import EraseSession
from handoff.kernel.errors import InvalidArgument
from handoff.kernel.text import escape_controls
from handoff.kernel.types import AgentId
from handoff.storage.kv import RocksKeyValue


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
    if ns.kafka or env.kafka_bootstrap and not ns.data_dir:
        raise InvalidArgument("purge --kafka is not available yet: erase in Kafka mode is not built")
    reason = ns.reason.strip()
    if not reason:
        raise InvalidArgument("--reason must say why the session is erased (it is recorded in the log)")
    db = DataDir(ns.data_dir or env.data_dir).db
    if not db.exists():
        raise FileNotFoundError(f"no handoff store at {db}")
    try:
        kv = RocksKeyValue(str(db))
    except Exception as exc:  # rocksdict raises a bare Exception (the lock of a running engine)
        busy = "lock" in str(exc).lower()
        hint = "; an engine has it open: stop `handoff serve` on this data dir, then purge" if busy else ""
        raise OSError(f"cannot open the store at {db}: {exc}{hint}") from exc
    try:
        command = EraseSession(session_key=ns.session, reason=reason, actor=AgentId(operator_name()))
        version = asyncio.run(_erase(kv, command))
    finally:
        kv.close()
    if ns.json:
        print(json.dumps({"sessionKey": ns.session, "erased": True, "version": version, "reason": reason}))
    else:
        print(escape_controls(f"erased session {ns.session!r} (event version {version}): {reason}"))
    return 0
