"""``--codebase-root`` and ``HANDOFF_CODEBASE_ROOTS``: where analyze_codebase may read, checked at start-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from handoff.cli import build_parser, main
from handoff.codebaseoptions import ENV, codebase_roots


def _roots(argv: list[str], environ: dict[str, str] | None = None) -> tuple[str, ...]:
    return codebase_roots(build_parser().parse_args(argv), environ or {})


def test_the_flag_is_repeatable_and_gives_real_paths_in_order(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    os.symlink(tmp_path / "b", tmp_path / "b-link")
    argv = ["serve", "--codebase-root", str(tmp_path / "a"), "--codebase-root", str(tmp_path / "b-link")]
    assert _roots(argv) == (str((tmp_path / "a").resolve()), str((tmp_path / "b").resolve()))


def test_the_environment_is_read_only_without_the_flag(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    environ = {ENV: os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")])}
    assert _roots(["stdio"], environ) == (str((tmp_path / "a").resolve()), str((tmp_path / "b").resolve()))
    assert _roots(["stdio", "--codebase-root", str(tmp_path / "b")], environ) == (str((tmp_path / "b").resolve()),)
    assert _roots(["serve"]) == ()


def test_a_root_that_is_not_a_directory_is_refused_by_name(tmp_path: Path):
    with pytest.raises(ValueError, match="nope"):
        _roots(["serve", "--codebase-root", str(tmp_path / "nope")])


def test_serve_with_a_missing_root_exits_2_before_opening_anything(tmp_path: Path):
    data = tmp_path / "data"
    assert main(["serve", "--data-dir", str(data), "--codebase-root", str(tmp_path / "nope")]) == 2
    assert not (data / "db").exists()
