"""The composition root of ``handoff stdio``: find or start the data dir's shared engine, then relay to it.

It imports only what relaying needs (not the engine, not the MCP SDK): an MCP client gives its first
request 10 s before falling back to an older protocol, and that time also has to cover starting the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os

import anyio
import anyio.to_thread

from handoff import codebaseoptions
from handoff.config import DataDir, Env
from handoff.mcp import launch, localtrust

log = logging.getLogger("handoff")


def main(ns: argparse.Namespace, env: Env) -> int:
    """`handoff stdio`: find or start the shared engine, then relay stdin/stdout to it."""
    data = DataDir(ns.data_dir or env.data_dir)
    deadline = float(os.environ.get("HANDOFF_LOCK_DEADLINE") or launch.LOCK_DEADLINE)
    try:
        roots = codebaseoptions.codebase_roots(ns, os.environ)
    except ValueError as exc:
        log.error(str(exc))
        return 2
    try:
        url, lease = launch.ensure_engine(
            data,
            ns.idle_exit,
            while_starting=lambda: importlib.import_module("handoff.mcp.relay"),
            lock_deadline=deadline,
            codebase_roots=roots,
        )
    except (launch.EngineStartError, OSError) as exc:
        log.error("cannot reach an engine", extra={"error": str(exc)})
        return 1
    from handoff.mcp import relay  # already imported while the engine started

    leases = [lease]  # held until this process ends

    async def reconnect() -> str:
        again, more = await anyio.to_thread.run_sync(
            lambda: launch.ensure_engine(data, ns.idle_exit, lock_deadline=deadline, codebase_roots=roots)
        )
        leases.append(more)
        return again

    try:
        asyncio.run(relay.run(url, reconnect, secret=localtrust.read_secret(data.secret)))
    except KeyboardInterrupt:
        pass
    for held in leases:
        held.close()
    return 0
