"""analyze_codebase's sandbox and summaries, on small projects written by the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from handoff.mcp.codebase import MAX_FILE_BYTES, analyze, summarise

PYTHON = '''"""A module."""
import os
import json as j
from pathlib import Path
from . import sibling
from .pkg.mod import thing

LIMIT: int = 3
name = "x"


class Store:
    def get(self):
        import inner_only
        return 1


async def fetch(url):
    return url


def _private():
    pass
'''

TYPESCRIPT = """// a comment with import x from 'nope'
import { readFile } from "fs/promises";
import type { Config } from './config';
import './side-effect';
export * from "./reexport";
const lodash = require('lodash');
/* class Hidden {} in a comment */
const text = "function notReal() {}";

export interface User {
  id: string;
  greet(): void;
}

export type Id = string | number;

export enum Colour { Red, Green }

export default class Service {
  run() {
    const inner = () => { function nested() {} };
  }
}

export async function main(argv: string[]): Promise<void> {
  const x = `template ${argv} with { braces }`;
}

export const VERSION = "1.0";
let counter = 0;
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text(PYTHON)
    (root / "src" / "service.ts").write_text(TYPESCRIPT)
    (root / "src" / "broken.py").write_text("def oops(:\n")
    (root / "big.txt").write_bytes(b"a" * (MAX_FILE_BYTES + 1))
    (root / "blob.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    os.symlink(root / "src" / "app.py", root / "inside-link.py")
    return root


def test_a_python_file_is_summarised_from_its_syntax_tree(project: Path):
    result = analyze(["src/app.py"], [project], "full").results[0]
    assert result.language == "python" and result.size_bytes == len(PYTHON.encode())
    assert result.summary["valid"] is True and result.summary["parser"] == "ast"
    assert result.summary["imports"] == ["os", "json", "pathlib", ".", ".pkg.mod"]
    names = [(d["kind"], d["name"]) for d in result.summary["definitions"]]
    assert names == [
        ("variable", "LIMIT"), ("variable", "name"), ("class", "Store"), ("function", "fetch"),
        ("function", "_private"),
    ]  # fmt: skip


def test_a_typescript_file_is_summarised_by_the_scan(project: Path):
    result = analyze(["src/service.ts"], [project], "full").results[0]
    assert result.language == "typescript" and result.summary["parser"] == "scan"
    assert result.summary["imports"] == ["fs/promises", "./config", "./side-effect", "./reexport", "lodash"]
    names = [(d["kind"], d["name"]) for d in result.summary["definitions"]]
    assert names == [
        ("variable", "lodash"), ("variable", "text"), ("interface", "User"), ("type", "Id"), ("enum", "Colour"),
        ("class", "Service"), ("function", "main"), ("variable", "VERSION"), ("variable", "counter"),
    ]  # fmt: skip
    assert result.summary["valid"] is True


def test_javascript_has_no_typescript_declarations():
    summary = summarise("const type = 1;\nexport function go() {}\n", "javascript")
    assert [d["name"] for d in summary["definitions"]] == ["type", "go"]


def test_a_syntax_error_is_reported_not_raised(project: Path):
    result = analyze(["src/broken.py"], [project], "syntax").results[0]
    assert result.summary["valid"] is False and "line 1" in result.summary["syntaxError"]


@pytest.mark.parametrize(
    ("path", "code", "why"),
    [
        ("../secret.txt", "NOT_PERMITTED", "'..'"),
        ("src/../../secret.txt", "NOT_PERMITTED", "'..'"),
        ("/etc/passwd", "NOT_PERMITTED", "outside every codebase root"),
        ("link.txt", "NOT_PERMITTED", "through a symlink"),
        ("big.txt", "LIMIT_EXCEEDED", "the limit is"),
        ("blob.bin", "INVALID_ARGUMENT", "binary"),
        ("missing.py", "INVALID_ARGUMENT", "does not exist"),
        ("src", "INVALID_ARGUMENT", "not a regular file"),
    ],
)
def test_each_refused_file_is_its_own_error_and_the_rest_are_analysed(project: Path, path: str, code: str, why: str):
    report = analyze([path, "src/app.py"], [project])
    assert [r.file_path for r in report.results] == ["src/app.py"]
    [error] = report.errors
    assert error.file_path == path and error.code == code and why in error.error, error


def test_an_absolute_path_under_a_later_root_and_a_symlink_inside_are_read(project: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.js").write_text("import a from 'b';\n")
    report = analyze([str(other / "x.js"), "inside-link.py"], [project, other])
    assert [r.language for r in report.results] == ["javascript", "python"] and not report.errors
    assert report.to_dict()["totalFiles"] == 2


def test_without_roots_every_file_is_not_permitted(project: Path):
    assert [e.code for e in analyze(["src/app.py"], []).errors] == ["NOT_PERMITTED"]


def test_a_two_mebibyte_file_is_refused_over_the_limit_without_being_read_whole(project: Path):
    (project / "huge.py").write_bytes(b"x = 1\n" * (2 * 1024 * 1024 // 6 + 1))
    report = analyze(["huge.py", "src/app.py"], [project])
    assert [(e.file_path, e.code) for e in report.errors] == [("huge.py", "LIMIT_EXCEEDED")]
    assert [r.file_path for r in report.results] == ["src/app.py"]


def test_an_absolute_path_through_a_symlinked_directory_that_leaves_the_root_is_refused(project: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.py").write_text("import os\n")
    os.symlink(outside, project / "escape")
    [error] = analyze([str(project / "escape" / "x.py")], [project]).errors
    assert error.code == "NOT_PERMITTED" and "through a symlink" in error.error


SMALL_PYTHON = {
    "pkg/__init__.py": "from .core import Engine\n\n__all__ = ['Engine']\n",
    "pkg/core.py": "import asyncio\nfrom dataclasses import dataclass\n\n\n@dataclass\nclass Engine:\n"
    "    name: str\n\n\nasync def run(engine: Engine) -> None:\n    await asyncio.sleep(0)\n",
    "main.py": "import sys\nfrom pkg import Engine\n\nDEBUG = False\n\n\ndef main() -> int:\n    return 0\n",
}

SMALL_TYPESCRIPT = {
    "src/index.ts": "export { App } from './app';\nexport type { Options } from './types';\n",
    "src/app.ts": "import { Options } from './types';\nimport * as path from 'node:path';\n\n"
    "export class App {\n  constructor(private options: Options) {}\n  start(): void { function inner() {} }\n}\n\n"
    "export function createApp(options: Options): App {\n  return new App(options);\n}\n",
    "src/types.ts": "export interface Options {\n  root: string;\n}\n\nexport type Mode = 'dev' | 'prod';\n\n"
    "export enum Level { Low, High }\n",
}


def _write(root: Path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return list(files)


def _outline(root: Path, files: dict[str, str]) -> dict[str, tuple[list[str], list[tuple[str, str]]]]:
    report = analyze(_write(root, files), [root])
    assert not report.errors
    return {
        r.file_path: (r.summary["imports"], [(d["kind"], d["name"]) for d in r.summary["definitions"]])
        for r in report.results
    }


def test_a_small_python_project_is_summarised_file_by_file(tmp_path: Path):
    assert _outline(tmp_path, SMALL_PYTHON) == {
        "pkg/__init__.py": ([".core"], [("variable", "__all__")]),
        "pkg/core.py": (["asyncio", "dataclasses"], [("class", "Engine"), ("function", "run")]),
        "main.py": (["sys", "pkg"], [("variable", "DEBUG"), ("function", "main")]),
    }


def test_a_small_typescript_project_is_summarised_file_by_file(tmp_path: Path):
    assert _outline(tmp_path, SMALL_TYPESCRIPT) == {
        "src/index.ts": (["./app", "./types"], []),
        "src/app.ts": (["./types", "node:path"], [("class", "App"), ("function", "createApp")]),
        "src/types.ts": ([], [("interface", "Options"), ("type", "Mode"), ("enum", "Level")]),
    }
