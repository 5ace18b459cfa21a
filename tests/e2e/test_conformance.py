"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, npm) against `handoff serve`.

The suite is installed with npm into a cache directory the first time (later runs reuse it). Its
version is pinned: 0.1.13 is the newest that runs on Node 20 (0.1.14 and later import
``fs.globSync``, which Node added in 22). Without Node and npm the test skips on a developer's
machine and fails in CI (``CI=true``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.harness import Served, start_server

VERSION = "0.1.13"
PACKAGE = f"@modelcontextprotocol/conformance@{VERSION}"
SCENARIOS = (
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "logging-set-level",
    "dns-rebinding-protection",
)
RESULT = re.compile(r"Passed: (\d+)/(\d+), (\d+) failed")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the MCP conformance suite cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def _cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "handoff" / f"conformance-{VERSION}"


@pytest.fixture(scope="module")
def conformance() -> Path:
    """The suite's command, installed into the cache directory if it is not there yet."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed for @modelcontextprotocol/conformance (Node 20 or later)")
    assert node is not None and npm is not None
    major = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(major.lstrip("v").split(".")[0]) < 20:
        _unavailable(f"node {major} is too old for @modelcontextprotocol/conformance (Node 20 or later)")
    cache = _cache()
    command = cache / "node_modules" / ".bin" / "conformance"
    if not command.exists():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--loglevel=error", PACKAGE],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            _unavailable(f"npm install {PACKAGE} failed:\n{done.stderr[-3000:]}")
    return command


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("conformance")
    server = start_server(root / "data", root / "serve.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_official_conformance_scenario_passes(
    scenario: str, conformance: Path, served: Served, tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(conformance), "server", "--url", served.mcp_url, "--scenario", scenario],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,  # it writes results/ into its working directory
    )  # fmt: skip
    output = done.stdout + done.stderr
    found = RESULT.search(output)
    assert found is not None, f"no result line from the suite:\n{output[-4000:]}\n--- server ---\n{served.log()}"
    passed, total, failed = (int(g) for g in found.groups())
    assert failed == 0 and passed == total > 0, f"{scenario}: {found.group(0)}\n{output[-4000:]}"
    assert done.returncode == 0, output[-4000:]
