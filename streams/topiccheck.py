"""Whether the topics on a cluster are what the deployment needs, and `handoff kafka check`, which prints it.

Adapters and workers check on start (through `streams.topics.ensure_topics`) and refuse to run on a
difference: a different partition count would hash sessions to other deciders, a lower replication
factor or min.insync.replicas would acknowledge writes that one lost broker takes with it, and an
events topic that is compacted or expires records would lose the log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from streams import replication
from streams.replication import Replication, default_min_insync
from streams.security import PLAINTEXT, KafkaSecurity
from streams.security import add_options as add_security_options

if TYPE_CHECKING:
    from streams.topics import Topics

UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION
RETRY_SECONDS = 60.0

T = TypeVar("T")


async def retrying(call: Callable[[], Awaitable[T]], deadline: float = RETRY_SECONDS) -> T:
    """`call()` again while it fails with a retriable Kafka error, until `deadline` seconds have passed.

    The admin client sends each request to a node it picks at random from the metadata; a node that was
    just lost stays there until the controller fences it (seconds), so a start during a broker's outage
    would otherwise fail for a node that another request would not even need.
    """
    end = time.monotonic() + deadline
    while True:
        try:
            return await call()
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > end:
                raise
        await asyncio.sleep(0.5)


@dataclass(frozen=True)
class TopicState:
    """What the cluster says about one topic."""

    name: str
    partitions: int
    replication: int  # the fewest replicas any partition has
    under_replicated: int  # partitions whose in-sync replicas are fewer than their replicas
    leaderless: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """One setting of one topic: what the deployment needs and what the cluster has."""

    topic: str
    setting: str
    needed: str
    actual: str
    ok: bool

    def sentence(self) -> str:
        """The line an operator reads."""
        return f"topic {self.topic}: {self.setting} is {self.actual}, the deployment needs {self.needed}"


class TopicMismatch(Exception):
    """Existing topics differ from what the deployment needs: running on them would decide or keep wrongly."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("; ".join(f.sentence() for f in findings))


def findings(topics: Topics, states: dict[str, TopicState], brokers: int) -> list[Finding]:
    """Every checked setting of every existing topic of `topics` (missing topics have none)."""
    wanted = topics.replication
    factor, _ = wanted.resolve(brokers)
    out: list[Finding] = []
    for spec in topics.specs():
        state = states.get(spec.name)
        if state is None:
            continue
        out.append(_exact(spec.name, "the partition count", str(spec.num_partitions), str(state.partitions)))
        out.append(_replication(spec.name, wanted, factor, state.replication))
        out.append(_min_insync(spec.name, wanted, state))
        for name in _CHECKED_CONFIGS.get(spec.name.rsplit(".", 1)[-1], ()):
            needed = spec.topic_configs.get(name, "")
            out.append(_exact(spec.name, name, needed, state.configs.get(name, "(unset)")))
    return out


# Settings whose change would lose or reorder records: the log keeps everything, the compacted topics keep
# each key's last record (a deleted "progress" record would make a new decider start from offset 0).
_CHECKED_CONFIGS = {
    "events": ("cleanup.policy", "retention.ms", "retention.bytes"),
    "workers": ("cleanup.policy",),
    "progress": ("cleanup.policy",),
    "keys": ("cleanup.policy",),
}


def _exact(topic: str, setting: str, needed: str, actual: str) -> Finding:
    return Finding(topic, setting, needed, actual, needed == actual)


def _replication(topic: str, wanted: Replication, factor: int, actual: int) -> Finding:
    if wanted.factor is not None:
        return _exact(topic, "the replication factor", str(wanted.factor), str(actual))
    # By default more copies than a (perhaps degraded) cluster's size would give new topics are fine.
    return Finding(topic, "the replication factor", f"at least {factor}", str(actual), actual >= factor)


def _min_insync(topic: str, wanted: Replication, state: TopicState) -> Finding:
    actual_text = state.configs.get("min.insync.replicas", "(unset)")
    actual = int(actual_text) if actual_text.isdigit() else 0
    if wanted.min_insync is not None:
        return _exact(topic, "min.insync.replicas", str(wanted.min_insync), actual_text)
    low = default_min_insync(state.replication)
    needed = f"{low}" if low == state.replication else f"{low} to {state.replication}"
    return Finding(topic, "min.insync.replicas", needed, actual_text, low <= actual <= state.replication)


async def describe(admin: AIOKafkaAdminClient, names: Iterable[str]) -> dict[str, TopicState]:
    """The states of those of `names` that exist."""
    described = await admin.describe_topics(list(names))
    present = [t for t in described if t["error_code"] != UNKNOWN_TOPIC and t["partitions"]]
    configs: dict[str, dict[str, str]] = {t["topic"]: {} for t in present}
    if present:
        resources = [ConfigResource(ConfigResourceType.TOPIC, t["topic"]) for t in present]
        for response in await admin.describe_configs(resources):
            for resource in response.to_object()["resources"]:
                entries = resource["config_entries"]
                configs[resource["resource_name"]] = {e["config_names"]: e["config_value"] for e in entries}
    return {t["topic"]: _state(t, configs[t["topic"]]) for t in present}


def _state(topic: dict[str, Any], configs: dict[str, str]) -> TopicState:
    parts = topic["partitions"]
    return TopicState(
        name=topic["topic"],
        partitions=len(parts),
        replication=min(len(p["replicas"]) for p in parts),
        under_replicated=sum(len(p["isr"]) < len(p["replicas"]) for p in parts),
        leaderless=sum(p["leader"] < 0 for p in parts),
        configs=configs,
    )


async def brokers(admin: AIOKafkaAdminClient) -> int:
    """The live brokers of the cluster."""
    return len((await admin.describe_cluster())["brokers"])


async def verify(admin: AIOKafkaAdminClient, topics: Topics) -> None:
    """Raise `TopicMismatch` when an existing topic differs from what the deployment needs."""
    states = await describe(admin, [spec.name for spec in topics.specs()])
    wrong = [f for f in findings(topics, states, await brokers(admin)) if not f.ok]
    if wrong:
        raise TopicMismatch(wrong)


# -- handoff kafka check ----------------------------------------------------------------------------------


async def report(
    bootstrap: str, topics: Topics, security: KafkaSecurity = PLAINTEXT
) -> tuple[list[str], bool]:
    """The operator's report (lines) and whether every existing topic is as the deployment needs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **security.client_kwargs())
    await admin.start()
    try:
        live = await retrying(lambda: brokers(admin))
        states = await retrying(lambda: describe(admin, [spec.name for spec in topics.specs()]))
    finally:
        await admin.close()
    factor, min_insync = topics.replication.resolve(live)
    lines = [
        f"cluster: {live} live broker(s); new topics get replication factor {factor}, min.insync.replicas {min_insync}",
    ]
    checked = findings(topics, states, live)
    for spec in topics.specs():
        state = states.get(spec.name)
        if state is None:
            lines.append(f"MISSING  {spec.name}: created by the first worker or `handoff serve --kafka`")
            continue
        wrong = [f"DIFFERS  {f.sentence()}" for f in checked if f.topic == spec.name and not f.ok]
        degraded = state.under_replicated or state.leaderless
        health = f"{state.under_replicated} under-replicated, {state.leaderless} without a leader"
        lines.append(
            f"{'DIFFERS' if wrong else 'DEGRADED' if degraded else 'OK':8} {spec.name}: {state.partitions} "
            f"partition(s), replication factor {state.replication}; {health}"
        )
        lines.extend(wrong)
    ok = all(f.ok for f in checked)
    lines.append("all existing topics are as the deployment needs" if ok else "workers and adapters refuse to run")
    return lines, ok


def build_parser() -> argparse.ArgumentParser:
    """Options of ``handoff kafka check``."""
    from streams.topics import DEFAULT_PARTITIONS

    parser = argparse.ArgumentParser(
        prog="handoff kafka",
        description="Operations on a Kafka deployment of handoff.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="report whether the topics are what workers and adapters need (exit 1 when they differ)",
        description="Prints each topic's partitions, replication and health, and every setting that differs from "
        "what `handoff worker` and `handoff serve --kafka` would need with the same options (they refuse to run "
        "then). Exit status: 0 when every existing topic is right, 1 when one differs or Kafka cannot be reached.",
    )
    check.add_argument("--kafka", metavar="BOOTSTRAP", default=os.environ.get("HANDOFF_KAFKA_BOOTSTRAP"))
    check.add_argument(
        "--partitions", type=int, default=int(os.environ.get("HANDOFF_KAFKA_PARTITIONS") or DEFAULT_PARTITIONS)
    )
    check.add_argument("--topic-prefix", default=os.environ.get("HANDOFF_KAFKA_TOPIC_PREFIX") or "handoff")
    replication.add_arguments(check)
    add_security_options(check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``handoff kafka check --kafka BOOTSTRAP``."""
    from streams.topics import Topics

    ns = build_parser().parse_args(argv)
    if not ns.kafka:
        print("handoff kafka check: --kafka BOOTSTRAP (or HANDOFF_KAFKA_BOOTSTRAP) is required", file=sys.stderr)
        return 2
    try:
        wanted = replication.from_arguments(ns, os.environ)
        security = KafkaSecurity.from_options(ns, os.environ)
    except ValueError as exc:
        print(f"handoff kafka check: {exc}", file=sys.stderr)
        return 2
    topics = Topics(ns.topic_prefix, ns.partitions, wanted)
    try:
        lines, ok = asyncio.run(report(ns.kafka, topics, security))
    except KafkaError as exc:
        print(f"handoff kafka check: cannot reach Kafka at {ns.kafka}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0 if ok else 1
