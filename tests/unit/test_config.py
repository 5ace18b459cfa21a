"""Settings read from the environment."""

from __future__ import annotations

import pytest

from handoff.config import read_env


def test_the_fast_path_is_on_by_default():
    assert read_env({}).fast_path
    assert read_env({"HANDOFF_FAST_PATH": "1"}).fast_path


@pytest.mark.parametrize("off", ["0", "false", "OFF", " no "])
def test_handoff_fast_path_turns_the_fast_path_off(off: str):
    assert not read_env({"HANDOFF_FAST_PATH": off}).fast_path
