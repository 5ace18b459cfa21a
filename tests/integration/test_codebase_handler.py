"""The `analyze_codebase` handler over the embedded engine, without HTTP: the limits of its entries, and retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from handoff.engine.engine import Engine
from handoff.engine.service import EmbeddedService
from handoff.kernel.commands import RegisterSession
from handoff.kernel.errors import IdempotencyMismatch, InvalidArgument
from handoff.kernel.types import Limits
from handoff.mcp.codebase import analyze
from handoff.mcp.codebase_tool import AnalyzeCodebaseArgs, analyze_codebase, entry_of
from handoff.mcp.deps import Deps
from handoff.mcp.subscriptions import Notifier
from handoff.metrics import Metrics
from handoff.storage.kv import InMemoryKeyValue

pytestmark = pytest.mark.anyio


@pytest.fixture
async def deps(tmp_path: Path) -> AsyncIterator[Deps]:
    engine = Engine(InMemoryKeyValue(), sync=False)
    service = EmbeddedService(engine)
    await engine.start()
    try:
        await service.submit(RegisterSession(session_key="s", agent_from="alice"))
        yield Deps(
            commands=service, reads=service, limits=Limits(object_max_bytes=2048), metrics=Metrics(),
            notifier=Notifier(), codebase_roots=(str(tmp_path),),
        )  # fmt: skip
    finally:
        await engine.stop()


def _args(*paths: str, **extra: object) -> AnalyzeCodebaseArgs:
    return AnalyzeCodebaseArgs(session_key="s", file_paths=list(paths), **extra)  # type: ignore[arg-type]


async def test_a_file_whose_summary_is_over_the_metadata_limit_is_a_per_file_error(deps: Deps, tmp_path: Path) -> None:
    (tmp_path / "small.py").write_text("import os\n")
    (tmp_path / "wide.py").write_text("".join(f"def function_number_{i}():\n    pass\n" for i in range(200)))
    result = await analyze_codebase(deps, _args("small.py", "wide.py"))
    assert [r.file_path for r in result.report.results] == ["small.py"]
    [error] = result.report.errors
    assert (error.file_path, error.code) == ("wide.py", "LIMIT_EXCEEDED") and "too large" in error.error
    assert result.session.version == 2


async def test_when_no_file_can_be_analysed_nothing_is_written_and_every_file_is_named(deps: Deps) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await analyze_codebase(deps, _args("missing.py", "../up.py"))
    assert [e["filePath"] for e in caught.value.details["errors"]] == ["missing.py", "../up.py"]
    view = await deps.reads.session("s")
    assert view is not None and view.version == 1


async def test_a_retry_after_the_file_changed_is_an_idempotency_mismatch(deps: Deps, tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import os\n")
    first = await analyze_codebase(deps, _args("a.py", idempotency_key="k"))
    assert (await analyze_codebase(deps, _args("a.py", idempotency_key="k"))) == first
    (tmp_path / "a.py").write_text("import sys\n")
    with pytest.raises(IdempotencyMismatch):
        await analyze_codebase(deps, _args("a.py", idempotency_key="k"))


def test_an_entry_reads_as_a_summary_and_keeps_the_structured_result(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("import os\n\n\nclass A:\n    pass\n")
    [result] = analyze(["m.py"], [tmp_path], "full").results
    entry = entry_of(result, "full")
    assert entry.context_type == "file"
    assert entry.content.splitlines() == [
        "File: m.py", f"SHA-256: {result.sha256}", "Language: python (ast), 30 bytes, 5 lines", "Syntax: valid",
        "Imports: os", "Definitions: class A (line 4)",
    ]  # fmt: skip
    assert entry.metadata is not None and entry.metadata["summary"] == result.summary
    assert entry.metadata["analysisType"] == "full" and entry.metadata["sizeBytes"] == 30
