"""Settings read from the environment."""

from __future__ import annotations

import argparse

import pytest

from handoff.config import at_least_one, read_env


def test_the_fast_path_is_on_by_default():
    assert read_env({}).fast_path
    assert read_env({"HANDOFF_FAST_PATH": "1"}).fast_path


@pytest.mark.parametrize("off", ["0", "false", "OFF", " no "])
def test_handoff_fast_path_turns_the_fast_path_off(off: str):
    assert not read_env({"HANDOFF_FAST_PATH": off}).fast_path


def test_counts_on_the_command_line_are_whole_numbers_of_at_least_one() -> None:
    assert at_least_one("4") == 4
    with pytest.raises(argparse.ArgumentTypeError, match="must be at least 1, not 0"):
        at_least_one("0")
    with pytest.raises(argparse.ArgumentTypeError, match="not a whole number: 'two'"):
        at_least_one("two")
