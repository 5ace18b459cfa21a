"""The periodic-anchor options of `serve` and `worker`: what fits together, and the interval they set."""

from __future__ import annotations

from pathlib import Path

import pytest

from handoff.anchoroptions import AnchorOptions, anchor_options
from handoff.cli import build_parser


def _parse(*args: str) -> AnchorOptions | None:
    return anchor_options(build_parser().parse_args(["serve", *args]))


def test_without_anchor_dir_there_are_no_periodic_anchors() -> None:
    assert _parse() is None


def test_anchor_dir_key_and_minutes_give_the_interval_in_seconds(tmp_path: Path) -> None:
    key = tmp_path / "anchor.key"
    key.write_text("k")
    options = _parse("--anchor-dir", str(tmp_path / "a"), "--anchor-key", str(key), "--anchor-every", "2.5")
    assert options == AnchorOptions(tmp_path / "a", key, 150)
    assert _parse("--anchor-dir", str(tmp_path), "--anchor-key", str(key)) == AnchorOptions(tmp_path, key, 3600)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--anchor-key", "k"], "go with --anchor-dir"),
        (["--anchor-every", "5"], "go with --anchor-dir"),
        (["--anchor-dir", "d"], "needs --anchor-key"),
        (["--anchor-dir", "d", "--anchor-key", "/nonexistent/anchor.key"], "is not a file"),
    ],
)
def test_options_that_do_not_fit_are_refused_with_a_sentence(args: list[str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        _parse(*args)


@pytest.mark.parametrize("minutes", ["0", "0.001", "20000"])
def test_an_interval_outside_a_second_and_seven_days_is_refused(tmp_path: Path, minutes: str) -> None:
    key = tmp_path / "anchor.key"
    key.write_text("k")
    with pytest.raises(ValueError, match="--anchor-every"):
        _parse("--anchor-dir", str(tmp_path), "--anchor-key", str(key), "--anchor-every", minutes)


def test_the_worker_takes_the_same_options(tmp_path: Path) -> None:
    key = tmp_path / "anchor.key"
    key.write_text("k")
    ns = build_parser().parse_args(["worker", "--anchor-dir", str(tmp_path), "--anchor-key", str(key)])
    assert anchor_options(ns) == AnchorOptions(tmp_path, key, 3600)
