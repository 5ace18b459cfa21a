"""`analyze_codebase`'s reading and summarising: files under the configured roots only, each summarised.

The original tool read any path on the server. Here a path is read only if it lies under one of the
``--codebase-root`` directories once every symlink is resolved; ``..`` components, absolute paths
elsewhere, files over 1 MiB and binary files are refused one by one (the others are still analysed).

Python is summarised from its syntax tree (`ast`). JavaScript and TypeScript are summarised by a
tokenizer-level scan: comments and string contents are masked, braces counted, and imports and
declarations read at brace depth 0. It knows no grammar: a regular-expression literal holding a quote
or a brace can confuse it (the summary is then incomplete, never a crash), which is why the summary
says ``"parser": "scan"``.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

AnalysisType = Literal["syntax", "dependencies", "structure", "full"]
MAX_FILE_BYTES = 1024 * 1024
_LANGUAGES = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "typescript",
}  # fmt: skip


@dataclass(frozen=True)
class FileResult:
    """One analysed file."""

    file_path: str  # as the caller gave it
    sha256: str
    language: str
    size_bytes: int
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The result as the tool returns it (camelCase)."""
        return {
            "filePath": self.file_path, "sha256": self.sha256, "language": self.language,
            "sizeBytes": self.size_bytes, "summary": self.summary,
        }  # fmt: skip


@dataclass(frozen=True)
class FileError:
    """One file that was not analysed, and why."""

    file_path: str
    code: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        """The error as the tool returns it."""
        return {"filePath": self.file_path, "code": self.code, "error": self.error}


@dataclass
class Report:
    """What `analyze` found."""

    results: list[FileResult] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as the tool returns it."""
        return {
            "totalFiles": len(self.results),
            "results": [r.to_dict() for r in self.results],
            "errors": [e.to_dict() for e in self.errors],
        }


class Refused(Exception):
    """A file that may not or cannot be analysed; `code` is a tool error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def analyze(file_paths: Sequence[str], roots: Sequence[Path], analysis_type: AnalysisType = "structure") -> Report:
    """Read and summarise each file; a refused file becomes an error and the rest go on."""
    report = Report()
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    for given in file_paths:
        try:
            path = resolve(given, real_roots)
            report.results.append(_analyse_file(given, path, analysis_type))
        except Refused as exc:
            report.errors.append(FileError(given, exc.code, str(exc)))
    return report


def resolve(given: str, roots: Sequence[Path]) -> Path:
    """The real path of `given` if it lies under a root; Refused otherwise.

    A relative path resolves against the first root, an absolute one must lie under some root, and
    so must the file every symlink on the way leads to.
    """
    if not roots:
        raise Refused("NOT_PERMITTED", "no codebase root is configured (serve --codebase-root DIR)")
    if not given or "\x00" in given:
        raise Refused("INVALID_ARGUMENT", "a file path must be a non-empty string without NUL")
    if ".." in PurePosixPath(given).parts:
        raise Refused("NOT_PERMITTED", f"{given!r} contains '..': paths may not climb out of the roots")
    candidate = Path(given) if os.path.isabs(given) else roots[0] / given
    if os.path.isabs(given) and not any(_under(Path(os.path.abspath(given)), root) for root in roots):
        raise Refused("NOT_PERMITTED", f"{given!r} is outside every codebase root")
    real = Path(os.path.realpath(candidate))
    if not any(_under(real, root) for root in roots):
        raise Refused("NOT_PERMITTED", f"{given!r} leads outside every codebase root (through a symlink)")
    return real


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _analyse_file(given: str, path: Path, analysis_type: AnalysisType) -> FileResult:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise Refused("INVALID_ARGUMENT", f"{given!r} is not a regular file")
        if size > MAX_FILE_BYTES:
            raise Refused("LIMIT_EXCEEDED", f"{given!r} is {size} bytes; the limit is {MAX_FILE_BYTES}")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise Refused("INVALID_ARGUMENT", f"{given!r} does not exist") from None
    except OSError as exc:
        raise Refused("INVALID_ARGUMENT", f"{given!r} cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise Refused("LIMIT_EXCEEDED", f"{given!r} is over {MAX_FILE_BYTES} bytes")
    if b"\x00" in raw[:8192]:
        raise Refused("INVALID_ARGUMENT", f"{given!r} is a binary file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("INVALID_ARGUMENT", f"{given!r} is not UTF-8 text (a binary file?)") from None
    language = _LANGUAGES.get(path.suffix.lower(), "text")
    summary = summarise(text, language, analysis_type)
    return FileResult(given, hashlib.sha256(raw).hexdigest(), language, len(raw), summary)


def summarise(text: str, language: str, analysis_type: AnalysisType = "structure") -> dict[str, Any]:
    """The summary of one file's text in `language`, as much of it as `analysis_type` asks for."""
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    if language == "python":
        found = _python(text)
    elif language in ("javascript", "typescript"):
        found = _scripted(text, typescript=language == "typescript")
    else:
        found = {"parser": "none", "valid": True, "imports": [], "definitions": []}
    summary: dict[str, Any] = {"lines": lines, "parser": found["parser"]}
    if analysis_type in ("syntax", "full"):
        summary["valid"] = found["valid"]
        if "syntaxError" in found:
            summary["syntaxError"] = found["syntaxError"]
    if analysis_type in ("dependencies", "full"):
        summary["imports"] = found["imports"]
    if analysis_type in ("structure", "full"):
        summary["imports"] = found["imports"]
        summary["definitions"] = found["definitions"]
    return summary


def _python(text: str) -> dict[str, Any]:
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        return {
            "parser": "ast", "valid": False, "syntaxError": f"line {exc.lineno}: {exc.msg}",
            "imports": [], "definitions": [],
        }  # fmt: skip
    imports: list[str] = []
    definitions: list[dict[str, Any]] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            imports.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.ClassDef):
            definitions.append({"kind": "class", "name": node.name, "line": node.lineno})
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            definitions.append({"kind": "function", "name": node.name, "line": node.lineno})
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    definitions.append({"kind": "variable", "name": target.id, "line": node.lineno})
    return {"parser": "ast", "valid": True, "imports": _unique(imports), "definitions": definitions}


_IMPORT = re.compile(
    r"""\b(?:import|export)\b[^;'"`]*?\bfrom\s*(['"])(?P<a>[^'"]+)\1|\bimport\s*(['"])(?P<b>[^'"]+)\3"""
)
_REQUIRE = re.compile(r"""\brequire\s*\(\s*(['"])(?P<c>[^'"]+)\1\s*\)|\bimport\s*\(\s*(['"])(?P<d>[^'"]+)\3\s*\)""")
_DECLARATION = re.compile(
    r"""(?:^|[;\n}])\s*(?:export\s+(?:default\s+)?)?(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?"""
    r"""(?P<kind>function\*?|class|interface|type|enum|const|let|var|namespace)\s+(?P<name>[A-Za-z_$][\w$]*)"""
)
_TS_ONLY = frozenset({"interface", "type", "enum", "namespace"})


def _scripted(text: str, typescript: bool) -> dict[str, Any]:
    source, depth, code = _mask(text)
    imports: list[str] = []
    for pattern in (_IMPORT, _REQUIRE):
        for match in pattern.finditer(source):
            if code[match.start()]:  # not the word "import" inside a string
                imports.append(next(g for g in (match.groupdict().get(k) for k in "abcd") if g))
    definitions: list[dict[str, Any]] = []
    for match in _DECLARATION.finditer(source):
        at, kind = match.start("kind"), match.group("kind").rstrip("*")
        if depth[at] != 0 or not code[at] or (kind in _TS_ONLY and not typescript):
            continue
        kind = {"const": "variable", "let": "variable", "var": "variable"}.get(kind, kind)
        line = source.count("\n", 0, match.start("name")) + 1
        definitions.append({"kind": kind, "name": match.group("name"), "line": line})
    return {"parser": "scan", "valid": depth[-1] == 0, "imports": _unique(imports), "definitions": definitions}


def _mask(text: str) -> tuple[str, list[int], list[bool]]:
    """`text` with comments blanked, the brace depth at every position, and whether each position is code.

    String and template contents are kept (import specifiers live there), but their braces do not count.
    """
    out: list[str] = []
    depth: list[int] = []
    code: list[bool] = []
    level = 0
    for chunk, kind in _chunks(text):
        for ch in chunk:
            if kind is True and ch == "}":
                level = max(level - 1, 0)
            depth.append(level)
            code.append(kind is True)
            if kind is True and ch == "{":
                level += 1
            out.append(ch if kind is not None or ch == "\n" else " ")
    depth.append(level)
    code.append(False)
    return "".join(out), depth, code


def _chunks(text: str) -> Iterator[tuple[str, bool | None]]:
    """(text, True) for code, (text, False) for string contents, (text, None) for comments."""
    i, n, start = 0, len(text), 0
    while i < n:
        ch = text[i]
        two = text[i : i + 2]
        if two in ("//", "/*"):
            yield text[start:i], True
            end = text.find("\n" if two == "//" else "*/", i + 2)
            end = n if end < 0 else end + (0 if two == "//" else 2)
            yield text[i:end], None
            i = start = end
            continue
        if ch in "'\"`":
            yield text[start : i + 1], True
            j = i + 1
            while j < n and text[j] != ch and not (ch != "`" and text[j] == "\n"):
                j += 2 if text[j] == "\\" else 1
            j = min(j, n)
            yield text[i + 1 : j], False
            i = start = j  # the closing quote is code again
            if i < n:
                i += 1
            continue
        i += 1
    yield text[start:], True


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
