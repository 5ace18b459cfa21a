"""`handoff worker`'s options: declared by the CLI (no Kafka client imported), with the worker's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from handoff.bootstrap.worker import worker_config
from handoff.cli import build_parser
from handoff.config import read_env
from streams.topics import DEFAULT_PARTITIONS
from streams.worker import WorkerConfig


def test_the_worker_options_default_to_the_worker_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HANDOFF_KAFKA_PARTITIONS", "HANDOFF_KAFKA_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    env = read_env({"HANDOFF_DATA_DIR": "/srv/handoff"})
    config = worker_config(build_parser().parse_args(["worker", "--kafka", "127.0.0.1:9092"]), env)
    assert config.transactions == WorkerConfig.transactions
    assert config.topics.partitions == DEFAULT_PARTITIONS and config.topics.prefix == "handoff"
    assert config.data_dir == Path("/srv/handoff/worker")
    assert config.bootstrap == "127.0.0.1:9092" and config.worker_id.startswith("w-")


def test_every_worker_option_reaches_the_worker_config() -> None:
    args = [
        "worker", "--kafka", "k:1", "--data-dir", "/w1", "--web-host", "127.0.0.2", "--web-port", "8800",
        "--advertised-url", "http://w1:8800", "--partitions", "3", "--topic-prefix", "t", "--worker-id", "w1",
        "--transactions", "2",
    ]  # fmt: skip
    config = worker_config(build_parser().parse_args(args), read_env({}))
    assert (config.bootstrap, config.data_dir) == ("k:1", Path("/w1"))
    assert (config.web_host, config.web_port) == ("127.0.0.2", 8800)
    assert (config.advertised_url, config.worker_id, config.transactions) == ("http://w1:8800", "w1", 2)
    assert (config.topics.prefix, config.topics.partitions) == ("t", 3)
