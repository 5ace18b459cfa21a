"""Start `handoff serve --kafka` + one `handoff worker`, for the MCP contracts of tests/integration and tests/e2e.

The contracts are abstract test classes (`ToolErrorsContract`, `ReadsContract`, ...); each
tests/kafka/test_mcp_*.py module subclasses them, and the fixtures they ask for (`server`, `client`,
`key`, `uid`, `connect`) are provided by this tier against the Kafka processes.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from integration.harness import Served, child_env, handoff_command, start_server

from streams.topics import Topics

# serve --kafka is ready once every partition has a ready worker: topics created, the group joined and
# a transactional producer started per partition. That took 15 s on a shared 2-core machine at load
# average 20, half the deadline an embedded serve gets; give Kafka mode room.
READY_DEADLINE = 120.0


@dataclass
class KafkaMcp:
    """A `handoff worker` and a `handoff serve --kafka` on their own topics."""

    served: Served
    worker: subprocess.Popen[bytes]
    worker_log: Path
    topics: Topics

    def logs(self) -> str:
        worker = self.worker_log.read_text(errors="replace")[-6000:]
        return f"--- worker ---\n{worker}\n--- serve ---\n{self.served.log()}"


@contextmanager
def running_kafka_mcp(
    bootstrap: str, root: Path, *serve_args: str, env: dict[str, str] | None = None, topics: Topics | None = None
) -> Iterator[KafkaMcp]:
    """Start the worker, then the adapter (ready once every partition has a ready worker); stop both.

    `serve_args`: more options for `serve`; `env`: more environment for both processes (e.g. the
    switches that turn the accelerators off); `topics`: topics already written (default: new ones).
    """
    topics = topics or Topics(f"m{uuid.uuid4().hex[:8]}", 4)
    settings = {"HANDOFF_KAFKA_TOPIC_PREFIX": topics.prefix, "HANDOFF_KAFKA_PARTITIONS": str(topics.partitions)}
    settings.update(env or {})
    worker_log = root / "worker.log"
    with open(worker_log, "ab") as log:
        worker = subprocess.Popen(
            [*handoff_command(), "worker", "--kafka", bootstrap, "--data-dir", str(root / "worker")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**child_env(), **settings},
        )  # fmt: skip
    try:
        with pytest.MonkeyPatch.context() as mp:  # start_server passes os.environ on to the child
            for name, value in settings.items():
                mp.setenv(name, value)
            served = start_server(
                root / "serve", root / "serve.log", "--kafka", bootstrap, *serve_args, deadline=READY_DEADLINE
            )
        try:
            yield KafkaMcp(served, worker, worker_log, topics)
        finally:
            served.stop()
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
