"""Every tier: a test that runs the CLI in-process leaves logging as it found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from handoff.logs import KeyValueFormatter


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """`handoff.cli.main` run in-process points the root logger at that test's captured stderr, at INFO.

    Left in place, every later test logged into a closed file ("--- Logging error ---") and caught INFO
    records with `caplog` that it never asked for.
    """
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h.formatter, KeyValueFormatter)]:
        root.removeHandler(handler)
    root.setLevel(level)
