"""What a deployment needs of its topics: replication defaults and the checks of existing topics."""

from __future__ import annotations

import argparse

import pytest

from streams.replication import Replication, add_arguments, from_arguments
from streams.topiccheck import TopicState, findings
from streams.topics import Topics


def _states(topics: Topics, *, partitions: int | None = None, rf: int = 3, min_isr: str = "2",
            **events: str) -> dict[str, TopicState]:  # fmt: skip
    out = {}
    for spec in topics.specs(rf, int(min_isr)):
        configs = {k: v for k, v in spec.topic_configs.items()}
        configs["min.insync.replicas"] = min_isr
        if spec.name == topics.events:
            configs.update(events)
        count = partitions if partitions is not None and spec.num_partitions > 1 else spec.num_partitions
        out[spec.name] = TopicState(spec.name, count, rf, 0, 0, configs)
    return out


def _wrong(topics: Topics, states: dict[str, TopicState], brokers: int = 3) -> list[str]:
    return [f.sentence() for f in findings(topics, states, brokers) if not f.ok]


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))])
def test_the_default_replication_is_three_copies_at_most_and_two_in_sync_from_three(
    brokers: int, expected: tuple[int, int]
) -> None:
    assert Replication().resolve(brokers) == expected


def test_explicit_replication_settings_are_taken_as_they_are() -> None:
    assert Replication(2, 2).resolve(5) == (2, 2)


def test_flags_win_over_the_environment_and_the_environment_over_the_default() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    env = {"HANDOFF_KAFKA_REPLICATION_FACTOR": "2", "HANDOFF_KAFKA_MIN_INSYNC_REPLICAS": "1"}
    assert from_arguments(parser.parse_args([]), env) == Replication(2, 1)
    assert from_arguments(parser.parse_args(["--replication-factor", "3"]), env) == Replication(3, 1)
    assert from_arguments(parser.parse_args([]), {}) == Replication()


def test_a_malformed_replication_variable_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="HANDOFF_KAFKA_REPLICATION_FACTOR must be at least 1"):
        Replication.from_env({"HANDOFF_KAFKA_REPLICATION_FACTOR": "0"})


def test_topics_as_created_on_three_brokers_need_nothing() -> None:
    topics = Topics("h", 8)
    assert findings(topics, _states(topics), 3) != []
    assert _wrong(topics, _states(topics)) == []


def test_another_partition_count_is_named_with_the_topic_and_both_counts() -> None:
    topics = Topics("h", 8)
    wrong = _wrong(topics, _states(topics, partitions=4))
    assert "topic h.events: the partition count is 4, the deployment needs 8" in wrong
    assert "topic h.commands: the partition count is 4, the deployment needs 8" in wrong


def test_a_lower_replication_factor_than_the_cluster_gives_is_refused() -> None:
    topics = Topics("h", 8)
    wrong = _wrong(topics, _states(topics, rf=1, min_isr="1"))
    assert "topic h.events: the replication factor is 1, the deployment needs at least 3" in wrong


def test_more_copies_than_a_degraded_cluster_would_give_are_fine() -> None:
    topics = Topics("h", 8)  # one of three brokers is away: new topics would get 2 copies, these have 3
    assert _wrong(topics, _states(topics), brokers=2) == []


def test_an_explicit_factor_must_match_exactly() -> None:
    topics = Topics("h", 8, Replication(2, None))
    assert "topic h.events: the replication factor is 3, the deployment needs 2" in _wrong(topics, _states(topics))


def test_one_in_sync_replica_of_three_is_refused() -> None:
    topics = Topics("h", 8)
    assert "topic h.events: min.insync.replicas is 1, the deployment needs 2 to 3" in _wrong(
        topics, _states(topics, min_isr="1")
    )


def test_an_events_topic_that_expires_or_compacts_records_is_refused() -> None:
    topics = Topics("h", 8)
    wrong = _wrong(topics, _states(topics, **{"retention.ms": "604800000", "cleanup.policy": "compact"}))
    assert "topic h.events: retention.ms is 604800000, the deployment needs -1" in wrong
    assert "topic h.events: cleanup.policy is compact, the deployment needs delete" in wrong


def test_missing_topics_have_no_findings() -> None:
    assert findings(Topics("h", 8), {}, 3) == []
