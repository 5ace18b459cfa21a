"""Input that once got through: NaN and infinities in JSON, agent names that hide or imitate characters."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import pytest
from mcp import Client

from integration.harness import Served, handoff_command, new_session, ok, refused

pytestmark = pytest.mark.anyio

_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _post(url: str, body: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read().decode()


def _raw_session(url: str) -> dict[str, str]:
    """An initialized MCP session over plain HTTP, so that a body can carry what JSON encoders refuse to write."""
    hello = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }  # fmt: skip
    _, headers, _ = _post(url, json.dumps(hello), _HEADERS)
    session = {**_HEADERS, "mcp-protocol-version": "2025-06-18"}
    if headers.get("mcp-session-id"):
        session["mcp-session-id"] = headers["mcp-session-id"]
    _post(url, json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), session)
    return session


def _result(text: str) -> dict[str, Any]:
    """The JSON-RPC result of a response body, JSON or one SSE message."""
    if text.startswith("event:") or text.startswith("data:"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    result: dict[str, Any] = json.loads(text)["result"]
    return result


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "[1, {\"deep\": NaN}]"])
async def test_non_finite_numbers_in_metadata_are_refused_and_verify_stays_ok(server: Served, key: str, value: str):
    headers = _raw_session(server.mcp_url)
    args = f'{{"sessionKey": "{key}", "agentFrom": "a", "metadata": {{"x": {value}}}}}'
    params = f'{{"name": "register_session", "arguments": {args}}}'
    body = f'{{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {params}}}'
    _, _, text = _post(server.mcp_url, body, headers)
    result = _result(text)
    assert result["isError"] is True and result["structuredContent"]["code"] == "INVALID_ARGUMENT", result
    checked = subprocess.run(
        [*handoff_command(), "verify", "--session", key, "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "no such session" in checked.stdout + checked.stderr  # nothing was written, so nothing can be BROKEN


@pytest.mark.parametrize(
    "name",
    [
        "\u0430lice",  # Cyrillic а beside Latin letters
        "alic\u0435",  # Cyrillic е at the end
        "al\u200bice",  # zero-width space
        "alice\u202e",  # right-to-left override
        "ali\u2066ce",  # left-to-right isolate
        "\x85alice",  # C1 control (NEL)
        "\ufeffalice",  # byte-order mark
    ],
)
async def test_agent_names_that_hide_or_imitate_characters_are_refused(client: Client, key: str, name: str):
    await refused(client, "register_session", {"sessionKey": key, "agentFrom": name}, "INVALID_ARGUMENT")
    await refused(client, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")
    await new_session(client, key)
    await refused(client, "request_handoff", {"sessionKey": key, "targetAgent": name}, "INVALID_ARGUMENT")
    await refused(
        client, "update_context", {"sessionKey": key, "contextType": "message", "content": "x", "agent": name},
        "INVALID_ARGUMENT",
    )  # fmt: skip


async def test_an_agent_name_in_decomposed_form_is_the_same_agent_as_its_composed_form(client: Client, key: str):
    session = await ok(client, "register_session", {"sessionKey": key, "agentFrom": "Re\u0301my"})
    assert session["session"]["agentFrom"] == "R\u00e9my"


async def test_a_name_in_one_non_latin_script_is_a_name(client: Client, key: str):
    session = await ok(client, "register_session", {"sessionKey": key, "agentFrom": "Пётр-7"})
    assert session["session"]["agentFrom"] == "Пётр-7"
