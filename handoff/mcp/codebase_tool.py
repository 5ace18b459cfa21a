"""The `analyze_codebase` tool: read files under the codebase roots, append one `file` entry each, in one command.

Before any file is read the caller must be one who may append to the session (the rules of
`update_context`: with auth on, a member of the session acting as itself; never an auditor or an
operator), and the session must be active, so the tool cannot be used to probe the file system.
Files are read in a thread (up to 100 files of 1 MiB each). Each analysed file becomes a `file`
context entry whose content is a readable summary (path, SHA-256, language, size, imports and
top-level definitions) and whose metadata holds the structured result; the entries are submitted as
one `AppendContextBatch`, so they are all appended, with consecutive sequence numbers, or none is.
A file whose entry would break a limit is a per-file error like a refused one; a call in which no
file could be analysed writes nothing and fails with the per-file errors in its ``errors``.

An idempotent retry with the same key returns the first result when the files read the same; if
they changed in between, the entries differ and the retry is refused with IDEMPOTENCY_MISMATCH.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import msgspec

from handoff.kernel import commands as C
from handoff.kernel.access import check_principal
from handoff.kernel.errors import InvalidArgument, LimitExceeded, NotPermitted, SessionNotActive, SessionNotFound
from handoff.kernel.events import ContextAppended
from handoff.kernel.limits import check_limits
from handoff.kernel.types import AgentStr, Limits, SessionKeyStr
from handoff.mcp.codebase import AnalysisType, FileError, FileResult, Report, analyze
from handoff.mcp.deps import Deps
from handoff.mcp.results import SessionRef
from handoff.mcp.visibility import visible
from handoff.ports import Outcome

NO_ROOTS = "analyze_codebase is off here: the server was started without --codebase-root (or HANDOFF_CODEBASE_ROOTS)"

FilePaths = Annotated[
    list[str],
    msgspec.Meta(
        description="files to analyse (at most 100): relative to the first codebase root, or absolute under a root"
    ),
]


class AnalyzeCodebaseArgs(C.WriteArgs, frozen=True, kw_only=True):
    """Arguments of analyze_codebase."""

    session_key: SessionKeyStr
    file_paths: FilePaths
    analysis_type: AnalysisType = "structure"
    agent: AgentStr | None = None


class _Out(msgspec.Struct, kw_only=True, rename="camel"):
    pass


class FileResultOut(_Out, kw_only=True):
    """One analysed file, and the sequence number of the `file` entry it became."""

    file_path: str
    sha256: str
    language: str
    size_bytes: int
    summary: dict[str, Any]
    sequence_number: int


class FileErrorOut(_Out, kw_only=True):
    """One file that was not analysed: its path as given, an error code and why."""

    file_path: str
    code: str
    error: str


class CodebaseReport(_Out, kw_only=True):
    """What was analysed (``totalFiles`` of them) and what was refused."""

    total_files: int
    results: list[FileResultOut]
    errors: list[FileErrorOut]


class AnalyzeCodebaseResult(_Out, kw_only=True):
    """`analyze_codebase`."""

    success: bool
    report: CodebaseReport
    session: SessionRef


async def analyze_codebase(deps: Deps, a: AnalyzeCodebaseArgs) -> AnalyzeCodebaseResult:
    """Analyse the files and append one `file` entry per analysed file, all in one command."""
    _check_request(deps, a)
    await _check_session(deps, a.session_key)
    report = await asyncio.to_thread(analyze, a.file_paths, [Path(r) for r in deps.codebase_roots], a.analysis_type)
    results, items = _entries(report, a, deps.limits)
    if not results:
        errors = [e.to_dict() for e in report.errors]
        raise InvalidArgument(
            f"none of the {len(a.file_paths)} files could be analysed; nothing was written", errors=errors
        )
    command = C.AppendContextBatch(
        session_key=a.session_key, entries=items, agent=a.agent,
        expected_version=a.expected_version, idempotency_key=a.idempotency_key,
    )  # fmt: skip
    return _result(await deps.submit(command), results, report.errors)


def _check_request(deps: Deps, a: AnalyzeCodebaseArgs) -> None:
    """The checks that need neither the session nor the files: count, roots, and who the caller is."""
    count, most = len(a.file_paths), deps.limits.batch_entries_max
    if count == 0:
        raise InvalidArgument("filePaths must name at least one file", field="filePaths")
    if count > most:
        raise LimitExceeded(f"{count} filePaths; the limit is {most}", field="filePaths", limit=most)
    if not deps.codebase_roots:
        raise NotPermitted(NO_ROOTS)
    probe = C.AppendContextBatch(session_key=a.session_key, entries=[], agent=a.agent, principal=deps.principal)
    check_principal(probe)  # an auditor, an operator, or acting as another agent: refused before reading


async def _check_session(deps: Deps, key: str) -> None:
    """SESSION_NOT_FOUND unless the caller sees the session (with auth on: a member); SESSION_NOT_ACTIVE if over."""
    view = await visible(deps).session(key)
    if view is None:
        raise SessionNotFound(f"session {key!r} does not exist", sessionKey=key)
    if view.status != "active":
        raise SessionNotActive(f"session {key!r} is {view.status}", sessionKey=key, status=view.status)


def _entries(report: Report, a: AnalyzeCodebaseArgs, limits: Limits) -> tuple[list[FileResult], list[C.ContextItem]]:
    """The analysed files whose entries fit the limits, and those entries; the others join the report's errors."""
    results: list[FileResult] = []
    items: list[C.ContextItem] = []
    for result in report.results:
        item = entry_of(result, a.analysis_type)
        try:
            check_limits(C.AppendContextBatch(session_key=a.session_key, entries=[item]), limits)
        except LimitExceeded as exc:
            report.errors.append(FileError(result.file_path, exc.code, f"its summary is too large: {exc.message}"))
            continue
        results.append(result)
        items.append(item)
    return results, items


def entry_of(result: FileResult, analysis_type: AnalysisType) -> C.ContextItem:
    """The `file` context entry of an analysed file: a readable summary, and the structured result as metadata."""
    summary = result.summary
    lines = [
        f"File: {result.file_path}",
        f"SHA-256: {result.sha256}",
        f"Language: {result.language} ({summary['parser']}), {result.size_bytes} bytes, {summary['lines']} lines",
    ]
    if "valid" in summary:
        lines.append("Syntax: valid" if summary["valid"] else f"Syntax: invalid ({summary.get('syntaxError', '?')})")
    if "imports" in summary:
        lines.append("Imports: " + (", ".join(summary["imports"]) or "none"))
    if "definitions" in summary:
        found = [f"{d['kind']} {d['name']} (line {d['line']})" for d in summary["definitions"]]
        lines.append("Definitions: " + ("; ".join(found) or "none"))
    metadata = {"source": "analyze_codebase", "analysisType": analysis_type, **result.to_dict()}
    return C.ContextItem(context_type="file", content="\n".join(lines), metadata=metadata)


def _result(outcome: Outcome, results: list[FileResult], errors: list[FileError]) -> AnalyzeCodebaseResult:
    """The report, each result with the sequence number of its entry (consecutive, ending at the last event's)."""
    last = outcome.envelope.event
    assert isinstance(last, ContextAppended), "a batch appends context entries only"
    first = last.sequence_number - len(results) + 1
    snap = outcome.receipt.session
    return AnalyzeCodebaseResult(
        success=True,
        report=CodebaseReport(
            total_files=len(results),
            results=[
                FileResultOut(
                    file_path=r.file_path,
                    sha256=r.sha256,
                    language=r.language,
                    size_bytes=r.size_bytes,
                    summary=r.summary,
                    sequence_number=first + i,
                )
                for i, r in enumerate(results)
            ],
            errors=[FileErrorOut(file_path=e.file_path, code=e.code, error=e.error) for e in errors],
        ),
        session=SessionRef(session_key=snap.session_key, status=snap.status, version=snap.version),
    )
