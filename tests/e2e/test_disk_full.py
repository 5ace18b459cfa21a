"""A full disk: writes answer UNAVAILABLE and /readyz 503 while it lasts, and resume by themselves after."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.harness import handoff_command, http_client, http_get, ok, running_server, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 24 MiB tmpfs of the test's own, so that filling it fills nobody else's disk."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the disk-full test needs root to mount a small tmpfs")
        pytest.skip("needs root to mount a small tmpfs")
    where = Path(tempfile.mkdtemp(prefix="handoff-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)


def _fill(disk: Path) -> Path:
    """Write a file until the disk has no room left; the file, to delete later."""
    filler = disk / "filler"
    block = b"\0" * (1 << 20)
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(block)
                out.flush()
        except OSError:
            pass
    return filler


async def test_writes_resume_once_space_returns_after_a_disk_full(small_disk: Path, tmp_path: Path):
    with running_server(small_disk / "data", tmp_path / "server.log") as served:
        async with http_client(served.mcp_url) as client:
            await ok(client, "register_session", {"sessionKey": "full-1", "agentFrom": "alice"})
            filler = _fill(small_disk)
            outcomes = []
            for i in range(64):  # RocksDB may have room set aside: write until the disk says no
                result = await client.call_tool(
                    "update_context",
                    {"sessionKey": "full-1", "contextType": "message", "content": f"{i} " + "x" * 200_000},
                )
                code = (result.structured_content or {}).get("code")
                outcomes.append(code)
                if code == "UNAVAILABLE":
                    break
            assert outcomes[-1] == "UNAVAILABLE", outcomes
            assert http_get(served.url + "/readyz")[0] == 503
            filler.unlink()
            await wait_until(lambda: http_get(served.url + "/readyz")[0] == 200, 30, "/readyz 200 once space returned")
            entry = await ok(
                client, "update_context", {"sessionKey": "full-1", "contextType": "message", "content": "after"}
            )
            assert entry["contextEntry"]["sequenceNumber"] >= 2
    checked = subprocess.run(
        [*handoff_command(), "verify", "--data-dir", str(small_disk / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
