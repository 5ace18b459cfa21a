"""Creating the topics: a deployment's first start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from handoff.accel.kafka_open_probe import offset_errors
from kafka.support import Broker, WorkerProcess
from streams.topiccheck import TopicMismatch
from streams.topics import Topics, ensure_topics


async def _offset_errors(bootstrap: str, topics: Topics, *, created_by_another: bool = False) -> list[int]:
    """The error code of a ListOffsets for every partition of every topic, asked straight after `ensure_topics`.

    With `created_by_another`, the topics are created just before it, as another worker starting at the same
    moment would: `ensure_topics` finds them existing.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if created_by_another:
            await admin.create_topics(topics.specs())
        await ensure_topics(bootstrap, topics)
        node = (await admin.describe_cluster())["brokers"][0]["node_id"]  # the suite's broker is a single node
        asked = {spec.name: list(range(spec.num_partitions)) for spec in topics.specs()}
        return await offset_errors(admin, {node: asked})
    finally:
        await admin.close()


@pytest.mark.parametrize("created_by_another", [False, True], ids=["created-here", "created-by-another"])
def test_new_topics_answer_for_their_offsets_as_soon_as_they_are_ensured(
    broker: Broker, created_by_another: bool
) -> None:
    # A partition the controller has named a leader for, but that the broker has not opened yet, answers
    # NOT_LEADER_OR_FOLLOWER (6); a worker's consumer asking in that moment makes aiokafka log an ERROR.
    for _ in range(3):
        topics = Topics(f"tp{uuid.uuid4().hex[:8]}", 8)
        errors = asyncio.run(_offset_errors(broker.bootstrap, topics, created_by_another=created_by_another))
        assert len(errors) == 5 * 8 + 2 and set(errors) == {0}, errors


def test_the_first_worker_on_a_fresh_broker_logs_no_error_or_warning(broker: Broker, tmp_path: Path) -> None:
    # A fresh broker creates __consumer_offsets for its first group; a worker joining before the
    # coordinator has loaded it made aiokafka log COORDINATOR_NOT_AVAILABLE as an ERROR, then a WARNING.
    env = dict(broker.env, HANDOFF_KAFKA_DIR=str(tmp_path / "kafka"))  # the same jars, a new broker
    started = subprocess.run([str(broker.script), "start"], env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr[-3000:]
    log_path = tmp_path / "worker.log"
    try:
        bootstrap = started.stdout.strip().splitlines()[-1]
        worker = WorkerProcess(bootstrap, Topics(f"n{uuid.uuid4().hex[:8]}", 4), tmp_path / "w", log_path)
        worker.start()
        try:
            deadline = time.monotonic() + 90
            while log_path.read_text().count("partition ready") < 4:
                assert worker.proc is not None and worker.proc.poll() is None, worker.log()
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.2)
        finally:
            worker.stop()
    finally:
        subprocess.run([str(broker.script), "stop"], env=env, capture_output=True, timeout=120)
    lines = log_path.read_text().splitlines()
    assert [line for line in lines if "level=ERROR" in line or "level=WARNING" in line] == []
    assert any("created topics" in line for line in lines)  # it was the deployment's first start


def test_topics_with_another_partition_count_are_refused(broker: Broker) -> None:
    prefix = f"pc{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(broker.bootstrap, Topics(prefix, 4)))
    needed = rf"topic {prefix}.events: the partition count is 4, the deployment needs 8"
    with pytest.raises(TopicMismatch, match=needed):
        asyncio.run(ensure_topics(broker.bootstrap, Topics(prefix, 8)))


def test_a_worker_on_topics_with_another_partition_count_exits_with_status_1_naming_both(
    broker: Broker, tmp_path: Path
) -> None:
    prefix = f"pw{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(broker.bootstrap, Topics(prefix, 4)))
    worker = WorkerProcess(broker.bootstrap, Topics(prefix, 8), tmp_path / "w", tmp_path / "w.log")
    worker.start()
    assert worker.proc is not None
    assert worker.proc.wait(60) == 1
    assert f"topic {prefix}.commands: the partition count is 4, the deployment needs 8" in worker.log()


def test_kafka_check_reports_what_differs_and_exits_1(broker: Broker) -> None:
    prefix = f"kc{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(broker.bootstrap, Topics(prefix, 4)))
    handoff = [sys.executable, "-m", "handoff", "kafka", "check", "--kafka", broker.bootstrap, "--topic-prefix", prefix]
    right = subprocess.run([*handoff, "--partitions", "4"], capture_output=True, text=True, timeout=60)
    assert right.returncode == 0, right.stderr
    assert f"OK       {prefix}.events: 4 partition(s), replication factor 1" in right.stdout
    wrong = subprocess.run([*handoff, "--partitions", "8"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1
    assert f"DIFFERS  topic {prefix}.events: the partition count is 4, the deployment needs 8" in wrong.stdout
