"""The README stays a user's page: short, its two set-up commands first, no architecture or benchmark history."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_is_at_most_1500_words_as_wc_counts_them() -> None:
    words = len(README.read_text(encoding="utf-8").split())
    assert words <= 1500, f"README.md is {words} words; move detail to docs/ (the limit is 1,500)"


def test_the_readme_opens_with_the_two_set_up_commands() -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Set up\n\n```sh\n(.*?)```", text, re.S)
    assert block is not None, "README.md has no '## Set up' section with a sh block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_the_readme_holds_no_benchmark_history_and_no_faust_workers() -> None:
    text = README.read_text(encoding="utf-8")
    assert "faust worker" not in text.lower()
    figures = re.search(r"\b\d[\d,]* (calls|commands|events)/s\b", text)
    assert figures is None, "benchmark figures belong in bench/RESULTS.md"
