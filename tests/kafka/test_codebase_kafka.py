"""`analyze_codebase` in Kafka mode: `serve --kafka --codebase-root` reads, the worker decides one batch.

Run on both decider paths: the accelerated transaction (the default) and aiokafka's public
`producer.transaction()` (``HANDOFF_KAFKA_ACCEL=0``). The batch's events are appended in one
transaction; the reads, served by the worker from what it committed, show them in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from integration.harness import http_client, new_session, ok, refused, snapshot
from mcp import Client

from kafka.mcp import KafkaMcp, running_kafka_mcp
from kafka.support import Broker

PATHS = {"accelerated": {}, "public": {"HANDOFF_KAFKA_ACCEL": "0", "HANDOFF_FAST_PATH": "0"}}


@pytest.fixture(scope="module", params=list(PATHS))
def analysing(
    request: pytest.FixtureRequest, broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaMcp]:
    root = tmp_path_factory.mktemp("kafka-codebase")
    project = root / "project"
    project.mkdir()
    (project / "a.py").write_text("import json\n\n\ndef load(text):\n    return json.loads(text)\n")
    (project / "b.ts").write_text("import { a } from './a';\nexport class B {}\n")
    (project / "c.js").write_text("const fs = require('fs');\nmodule.exports = function read() {};\n")
    (project / "blob.bin").write_bytes(b"\x00\x01\x02")
    env = PATHS[request.param]
    with running_kafka_mcp(broker.bootstrap, root, "--codebase-root", str(project), env=env) as running:
        if env:
            assert "accelerator off by its switch" in running.worker_log.read_text(errors="replace"), running.logs()
        yield running
        assert running.worker.poll() is None, f"the worker died\n{running.logs()}"


@pytest.fixture
async def reader(analysing: KafkaMcp) -> AsyncIterator[Client]:
    async with http_client(analysing.served.mcp_url) as c:
        yield c


@pytest.mark.anyio
async def test_a_batch_is_decided_in_one_transaction_into_consecutive_entries(reader: Client, key: str) -> None:
    await new_session(reader, key, updates=1)
    args = {"sessionKey": key, "filePaths": ["a.py", "blob.bin", "b.ts", "c.js"], "idempotencyKey": "once"}
    body = await ok(reader, "analyze_codebase", args)
    assert [(r["filePath"], r["sequenceNumber"]) for r in body["report"]["results"]] == [
        ("a.py", 3), ("b.ts", 4), ("c.js", 5),
    ]  # fmt: skip
    assert [(e["filePath"], e["code"]) for e in body["report"]["errors"]] == [("blob.bin", "INVALID_ARGUMENT")]
    assert body["session"]["version"] == 5
    version, entries = await snapshot(reader, key)
    assert version == 5
    assert [(e["sequenceNumber"], e["version"], e["contextType"]) for e in entries[2:]] == [
        (3, 3, "file"), (4, 4, "file"), (5, 5, "file"),
    ]  # fmt: skip
    assert entries[2]["metadata"]["summary"]["imports"] == ["json"]
    assert await ok(reader, "analyze_codebase", args) == body  # the retry: the first result, nothing new
    assert (await snapshot(reader, key))[0] == 5


@pytest.mark.anyio
async def test_a_refused_batch_appends_nothing(reader: Client, key: str) -> None:
    await new_session(reader, key, updates=1)
    before = await snapshot(reader, key)
    args = {"sessionKey": key, "filePaths": ["a.py", "b.ts"], "expectedVersion": 1}
    await refused(reader, "analyze_codebase", args, "VERSION_CONFLICT")
    assert await snapshot(reader, key) == before
    body = await ok(reader, "analyze_codebase", {**args, "expectedVersion": 2})
    assert body["session"]["version"] == 4
