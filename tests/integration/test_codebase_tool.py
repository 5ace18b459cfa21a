"""`analyze_codebase` over MCP against `handoff serve --codebase-root DIR`: one command, one `file` entry per file."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from handoff.audit.transfer import export_lines, import_lines
from handoff.audit.verify import verify
from handoff.engine.engine import Engine
from handoff.kernel.commands import AppendContext, AppendContextBatch, ContextItem, RegisterSession
from handoff.storage.kv import RocksKeyValue
from integration.harness import (
    Served,
    child_env,
    handoff_command,
    http_client,
    new_session,
    ok,
    refused,
    snapshot,
    start_server,
    stop_engine_of,
)

PY = "import os\nfrom .models import User\n\n\nclass Service:\n    pass\n\n\ndef handler(event):\n    return event\n"
TS = "import { Router } from 'express';\n\nexport interface Route {\n  path: string;\n}\n\nexport function mount() {}\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("codebase")
    project = base / "project"
    (project / "app").mkdir(parents=True)
    (project / "web").mkdir()
    (project / "app" / "service.py").write_text(PY)
    (project / "web" / "routes.ts").write_text(TS)
    (project / "big.py").write_bytes(b"# padding\n" * (2 * 1024 * 1024 // 10))
    (project / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (base / "secret.txt").write_text("not yours")
    os.symlink(base / "secret.txt", project / "leak.txt")
    return project


@pytest.fixture(scope="module")
def analysing(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server that may read under `root`."""
    data = tmp_path_factory.mktemp("codebase-serve")
    served = start_server(data / "data", data / "server.log", "--codebase-root", str(root))
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
async def reader(analysing: Served) -> AsyncIterator[Client]:
    async with http_client(analysing.mcp_url) as c:
        yield c


def _args(key: str, *paths: str, **extra: Any) -> dict[str, Any]:
    return {"sessionKey": key, "filePaths": list(paths), **extra}


REFUSED = {
    "../secret.txt": "NOT_PERMITTED",
    "/etc/passwd": "NOT_PERMITTED",
    "leak.txt": "NOT_PERMITTED",
    "big.py": "LIMIT_EXCEEDED",
    "image.png": "INVALID_ARGUMENT",
}


@pytest.mark.anyio
async def test_one_call_appends_one_file_entry_per_analysed_file_and_reports_each_refusal(
    reader: Client, key: str, root: Path
) -> None:
    await new_session(reader, key, updates=1)  # version 2, entries 1 and 2
    body = await ok(reader, "analyze_codebase", _args(key, "app/service.py", *REFUSED, str(root / "web/routes.ts")))
    report = body["report"]
    assert report["totalFiles"] == 2
    assert [(r["filePath"], r["language"], r["sequenceNumber"]) for r in report["results"]] == [
        ("app/service.py", "python", 3), (str(root / "web/routes.ts"), "typescript", 4),
    ]  # fmt: skip
    assert {e["filePath"]: e["code"] for e in report["errors"]} == REFUSED
    python, typescript = report["results"]
    assert python["sha256"] == hashlib.sha256(PY.encode()).hexdigest() and python["sizeBytes"] == len(PY)
    assert python["summary"]["imports"] == ["os", ".models"]
    assert [d["name"] for d in python["summary"]["definitions"]] == ["Service", "handler"]
    assert typescript["summary"]["imports"] == ["express"]
    assert [d["name"] for d in typescript["summary"]["definitions"]] == ["Route", "mount"]
    assert body["session"] == {"sessionKey": key, "status": "active", "version": 4}
    version, entries = await snapshot(reader, key)
    assert version == 4
    files = entries[2:]
    assert [(e["sequenceNumber"], e["version"], e["contextType"]) for e in files] == [(3, 3, "file"), (4, 4, "file")]
    assert "File: app/service.py" in files[0]["content"] and python["sha256"] in files[0]["content"]
    assert "Definitions: class Service (line 5); function handler (line 9)" in files[0]["content"]
    assert files[1]["metadata"]["summary"] == typescript["summary"]
    assert files[1]["metadata"]["source"] == "analyze_codebase"


@pytest.mark.anyio
async def test_a_refused_call_writes_no_entry_at_all(reader: Client, key: str) -> None:
    await new_session(reader, key, updates=1)
    before = await snapshot(reader, key)
    await refused(reader, "analyze_codebase", _args(key, "app/service.py", "web/routes.ts", expectedVersion=1),
                  "VERSION_CONFLICT")  # fmt: skip
    nothing = await refused(reader, "analyze_codebase", _args(key, *REFUSED), "INVALID_ARGUMENT")
    assert {e["filePath"]: e["code"] for e in nothing["errors"]} == REFUSED
    await refused(reader, "analyze_codebase", _args(key, *(["app/service.py"] * 101)), "LIMIT_EXCEEDED")
    await refused(reader, "analyze_codebase", _args(key), "INVALID_ARGUMENT")
    await refused(reader, "analyze_codebase", _args("s-nobody-has-this", "app/service.py"), "SESSION_NOT_FOUND")
    assert await snapshot(reader, key) == before


@pytest.mark.anyio
async def test_a_retry_with_the_same_idempotency_key_returns_the_first_result_and_writes_nothing(
    reader: Client, key: str
) -> None:
    await new_session(reader, key)
    args = _args(key, "app/service.py", "web/routes.ts", idempotencyKey="scan-1", analysisType="dependencies")
    first = await ok(reader, "analyze_codebase", args)
    again = await ok(reader, "analyze_codebase", args)
    assert again == first and first["session"]["version"] == 3
    assert "definitions" not in first["report"]["results"][0]["summary"]
    assert (await snapshot(reader, key))[0] == 3


@pytest.mark.anyio
async def test_the_tool_is_listed_with_its_schemas(reader: Client) -> None:
    tools = {t.name: t for t in (await reader.list_tools()).tools}
    tool = tools["analyze_codebase"]
    assert {"sessionKey", "filePaths", "analysisType", "idempotencyKey"} <= set(tool.input_schema["properties"])
    assert tool.output_schema is not None and "report" in tool.output_schema["properties"]


@pytest.mark.anyio
async def test_without_a_codebase_root_the_tool_is_not_permitted(client: Client, key: str) -> None:
    await new_session(client, key)
    await refused(client, "analyze_codebase", _args(key, "app/service.py"), "NOT_PERMITTED")
    assert (await snapshot(client, key))[0] == 1


@pytest.mark.anyio
async def test_handoff_stdio_passes_its_roots_to_the_engine_it_starts(root: Path, tmp_path: Path, key: str) -> None:
    command = handoff_command()
    data = tmp_path / "data"
    argv = [*command[1:], "stdio", "--data-dir", str(data), "--codebase-root", str(root)]
    params = StdioServerParameters(command=command[0], args=argv, env=child_env())
    try:
        with open(tmp_path / "stdio.log", "a") as errlog:
            async with Client(stdio_client(params, errlog=errlog), cache=None) as stdio:
                await new_session(stdio, key)
                body = await ok(stdio, "analyze_codebase", _args(key, "web/routes.ts"))
                assert body["report"]["results"][0]["language"] == "typescript"
    finally:
        stop_engine_of(data)


def test_verify_and_export_import_accept_a_log_with_a_batch(tmp_path: Path) -> None:
    kv = RocksKeyValue(str(tmp_path / "db"))
    try:
        engine = Engine(kv, sync=False)
        items = [ContextItem(context_type="file", content=f"File: {n}") for n in ("a.py", "b.ts")]
        results = engine.write_now([
            RegisterSession(session_key="s", agent_from="alice"),
            AppendContextBatch(session_key="s", entries=items, idempotency_key="k"),
            AppendContext(session_key="s", context_type="message", content="after"),
        ])  # fmt: skip
        assert [r.envelope.version for r in results] == [1, 3, 4]  # type: ignore[union-attr]
        report = verify(kv, scratch=tmp_path, quiet=True)
        assert report.ok and report.events == 4, report.to_dict()
        exported = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in export_lines(kv))
    finally:
        kv.close()
    copy = RocksKeyValue(str(tmp_path / "copy"))
    try:
        import_lines(copy, io.BytesIO(exported))
        assert verify(copy, scratch=tmp_path, quiet=True).ok
    finally:
        copy.close()
