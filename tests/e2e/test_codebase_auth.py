"""`analyze_codebase` with `--auth token`: only who may append to the session may analyse into it.

The checks come before any file is read, so a caller who may not write learns nothing of the files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.harness import Served, ok, refused, snapshot, start_server

from e2e.auth_support import bearer_client, token_cli

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, str]]]:
    root = tmp_path_factory.mktemp("codebase-auth")
    project = root / "project"
    project.mkdir()
    (project / "a.py").write_text("import os\n")
    data = root / "data"
    server = start_server(data, root / "server.log", "--auth", "token", "--codebase-root", str(project))
    try:
        roles = {"alice": "agent", "carol": "agent", "audra": "auditor", "otto": "operator"}
        tokens = {a: str(token_cli(data, "create", "--agent", a, "--role", r)["token"]) for a, r in roles.items()}
        yield server, tokens
    finally:
        server.stop()


async def test_members_analyse_and_everyone_else_is_refused_before_a_file_is_read(
    served: tuple[Served, dict[str, str]], tmp_path: Path
) -> None:
    server, tokens = served
    key = f"s-{tmp_path.name[-12:]}"
    args = {"sessionKey": key, "filePaths": ["a.py", "missing.py"]}
    async with bearer_client(server.mcp_url, tokens["alice"]) as alice:
        await ok(alice, "register_session", {"sessionKey": key})
        async with bearer_client(server.mcp_url, tokens["carol"]) as carol:
            await refused(carol, "analyze_codebase", args, "SESSION_NOT_FOUND")  # not a member: no existence leak
        async with bearer_client(server.mcp_url, tokens["audra"]) as audra:
            await refused(audra, "analyze_codebase", args, "NOT_PERMITTED")
        async with bearer_client(server.mcp_url, tokens["otto"]) as otto:
            await refused(otto, "analyze_codebase", args, "NOT_PERMITTED")
        await refused(alice, "analyze_codebase", {**args, "agent": "carol"}, "NOT_PERMITTED")
        assert (await snapshot(alice, key))[0] == 1
        body = await ok(alice, "analyze_codebase", args)
        assert [r["filePath"] for r in body["report"]["results"]] == ["a.py"]
        assert [e["filePath"] for e in body["report"]["errors"]] == ["missing.py"]
        version, entries = await snapshot(alice, key)
        assert version == 2 and entries[-1]["agent"] == "alice" and entries[-1]["contextType"] == "file"
