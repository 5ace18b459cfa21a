"""Writer process for the crash test: N concurrent MCP clients write until the server dies.

Usage: python crash_writer.py MCP_URL PREFIX CLIENTS
Every acknowledged write is printed to stdout as one JSON line, flushed, before the next call.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
from mcp import Client


def ack(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    with anyio.fail_after(10):
        result = await client.call_tool(tool, args)
    if result.is_error or not isinstance(result.structured_content, dict):
        raise RuntimeError(f"{tool} refused: {result.structured_content}")
    return result.structured_content


async def writer(url: str, prefix: str, n: int, shared: str) -> None:
    own = f"{prefix}-own-{n}"
    agent = f"writer-{n}"
    try:
        async with Client(url, cache=None) as client:
            await call(client, "register_session", {"sessionKey": own, "agentFrom": agent})
            ack(tool="register_session", key=own, seq=1, content=f"Session registered by agent: {agent}")
            for i in range(100_000):
                key = shared if i % 2 else own
                content = f"{agent}:{i}"
                body = {"sessionKey": key, "contextType": "message", "content": content, "agent": agent}
                out = await call(client, "update_context", body)
                ack(tool="update_context", key=key, seq=out["contextEntry"]["sequenceNumber"], content=content)
                if i % 7 == 6:
                    out = await call(client, "request_handoff", {"sessionKey": own, "targetAgent": f"t-{n}-{i}"})
                    ack(tool="request_handoff", key=own, handoffId=out["handoff"]["handoffId"])
    except BaseException as error:  # noqa: BLE001 - the server is killed on purpose; any failure ends this writer
        sys.stderr.write(f"writer {n} stopped: {type(error).__name__}: {error}\n")


async def main(url: str, prefix: str, clients: int) -> None:
    shared = f"{prefix}-shared"
    async with Client(url, cache=None) as client:
        await call(client, "register_session", {"sessionKey": shared, "agentFrom": "writer-shared"})
    ack(tool="register_session", key=shared, seq=1, content="Session registered by agent: writer-shared")
    async with anyio.create_task_group() as tg:
        for n in range(clients):
            tg.start_soon(writer, url, prefix, n, shared)


if __name__ == "__main__":
    try:
        anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
    finally:
        sys.stdout.flush()
        os._exit(0)  # do not wait for transports to a dead server to wind down
