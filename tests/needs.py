"""External programs some tests need (Debian packages): missing in CI is a failure, on a developer's machine a skip."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def binary(name: str, package: str) -> str:
    """The path of `name`; fails the test in CI when it is missing, skips it (saying why) elsewhere."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is not installed (apt-get install {package}; .ci/run installs it)"
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
