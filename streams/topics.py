"""The Kafka topics of handoff, their settings, the key → partition rule, and the admin step that creates them.

    handoff.commands    command records (JSON), keyed by sessionKey (raw UTF-8); the worker that decided a record
                        deletes it once its transaction committed (`streams.trimming`)
    handoff.events      sealed events (canonical JSON), keyed by sessionKey; infinite retention: it is the log
    handoff.replies     decisions, keyed by the submitter's replyTo id (a submitter reads every partition and
                        keeps its own), sealed under the command record's replyKey; short retention. The decider
                        of p writes its replies to partition p, so each replies partition has one transactional
                        writer and a committed reply is never held back (last stable offset) by another
                        partition's open transaction
    handoff.deadletter  records that could not be decoded or decided, with the reason in headers
    handoff.workers     compacted: each worker's query URL, keyed by worker id (discovery)
    handoff.progress    compacted: partition p's decided position (the next command offset to decide), keyed by p,
                        written by the decider of p inside the transaction that appends the decided events
    handoff.keys        compacted: each session's data key (CONTRACT §8 Erasure), keyed by sessionKey, on the
                        session's partition; written in the transaction of its SessionRegistered event, and
                        deleted (a tombstone) in the transaction of its SessionErased event (docs/erasure.md)

Commands and events share the partition count, so partition p of the commands and partition p of
the events belong to the same decider: the single writer of every session hashed to p.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from handoff.accel import gate
from streams import topiccheck
from streams.replication import Replication
from streams.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 8
GROUP_ID = "handoff.deciders"

# How long a consumer's fetch waits at the broker while there is nothing to read. Records that arrive
# end the wait at once (for read_committed, the commit marker does), so a long wait costs no latency;
# a short one is a busy loop: at 10-20 ms an idle adapter used 11% of a core and an idle worker 6%,
# and the broker 9-14% serving them. At 500 ms: 2%, 1% and 3-4%, with the same reply latency.
LONG_POLL_MS = 500


# The keys topic must really forget an erased session's key: compaction only cleans closed segments, so
# segments roll every 10 minutes and are cleaned as soon as a tenth of a partition is superseded; the
# tombstone itself (and so the last trace that a key existed) goes a minute after that cleaning.
KEYS_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": "600000",
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": "60000",
    "max.compaction.lag.ms": "3600000",
}


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(session_key: str) -> int:
    """murmur2 is pure Python in aiokafka (~30 µs a key): every command needs it, and sessions repeat."""
    return int(murmur2(session_key.encode()) & 0x7FFFFFFF)


@dataclass(frozen=True)
class Topics:
    """Topic names (a prefix lets several installations, or tests, share one cluster) and partitions."""

    prefix: str = "handoff"
    partitions: int = DEFAULT_PARTITIONS
    replication: Replication = Replication()  # resolved against the cluster's size when topics are created

    @property
    def commands(self) -> str:
        """Command records."""
        return f"{self.prefix}.commands"

    @property
    def events(self) -> str:
        """The log."""
        return f"{self.prefix}.events"

    @property
    def replies(self) -> str:
        """Decisions for submitters."""
        return f"{self.prefix}.replies"

    @property
    def deadletter(self) -> str:
        """Records that could not be decided."""
        return f"{self.prefix}.deadletter"

    @property
    def workers(self) -> str:
        """Worker announcements."""
        return f"{self.prefix}.workers"

    @property
    def progress(self) -> str:
        """Each partition's decided position, in the deciders' transactions."""
        return f"{self.prefix}.progress"

    @property
    def keys(self) -> str:
        """Each session's data key (a tombstone once erased), in the deciders' transactions."""
        return f"{self.prefix}.keys"

    @property
    def group(self) -> str:
        """The deciders' consumer group."""
        return f"{self.prefix}.deciders"

    def transactional_id(self, partition: int) -> str:
        """One transactional id per partition: whoever decides partition p fences every earlier owner."""
        return f"{self.prefix}.decider-{partition}"

    def partition_for(self, session_key: str) -> int:
        """Kafka's default partitioner (murmur2 of the raw UTF-8 key), as every client computes it."""
        return _key_hash(session_key) % self.partitions

    def specs(self, factor: int = 1, min_insync: int = 1) -> list[NewTopic]:
        """The topics and their settings, with `factor` copies of each, `min_insync` of them acknowledging a write."""
        n = self.partitions

        def spec(name: str, count: int, **configs: str) -> NewTopic:
            return NewTopic(name, count, factor, topic_configs={**configs, "min.insync.replicas": str(min_insync)})

        return [
            spec(self.commands, n, **{"retention.ms": str(7 * 86_400_000)}),
            spec(self.events, n, **{"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}),
            spec(self.replies, n, **{"retention.ms": str(3_600_000)}),
            spec(self.deadletter, 1, **{"retention.ms": "-1"}),
            spec(self.workers, 1, **{"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
            spec(self.progress, n, **{"cleanup.policy": "compact", "segment.ms": "3600000"}),
            spec(self.keys, n, **KEYS_CONFIGS),
        ]


async def ensure_topics(
    bootstrap: str, topics: Topics, *, group: str | None = None, accel: bool = True,
    security: KafkaSecurity = PLAINTEXT,
) -> None:  # fmt: skip
    """Create the topics that do not exist yet (idempotent); refuse existing ones that differ (`topiccheck`).

    New topics get the replication of `topics.replication` on this cluster (default: min(3, brokers)).
    With `group`, also wait until the broker can coordinate that consumer group (see `_until_coordinator`).
    `accel=False` (``HANDOFF_KAFKA_ACCEL=0``): wait for the topics' leaders only (see `_until_open`).
    Raises `topiccheck.TopicMismatch` when a topic differs from what the deployment needs.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **security.client_kwargs())
    await admin.start()
    try:
        await topiccheck.retrying(lambda: _ensure(admin, topics, group, accel))
    finally:
        await admin.close()


async def _ensure(admin: AIOKafkaAdminClient, topics: Topics, group: str | None, accel: bool = True) -> None:
    existing = set(await admin.list_topics())
    live = await topiccheck.brokers(admin)
    factor, min_insync = topics.replication.resolve(live)
    missing = [spec for spec in topics.specs(factor, min_insync) if spec.name not in existing]
    if missing and (factor > live or min_insync > factor):
        needed = topiccheck.Finding("(cluster)", "the live broker count", f"at least {factor}", str(live), False)
        if min_insync > factor:
            needed = topiccheck.Finding("(new topics)", "min.insync.replicas", f"at most {factor}", str(min_insync),
                                        False)  # fmt: skip
        raise topiccheck.TopicMismatch([needed])
    if missing:
        try:
            await admin.create_topics(missing)
        except TopicAlreadyExistsError:
            pass  # another worker or adapter created them first
        else:
            created = {"topics": [t.name for t in missing], "replicationFactor": factor, "minInsync": min_insync}
            log.info("created topics", extra=created)
    # All of them, not only those created here: a worker or adapter starting at the same moment may have
    # created them a moment ago (when they are open, one round of requests says so).
    await _until_open(admin, [spec.name for spec in topics.specs()], probe=gate.enabled(gate.KAFKA_OPEN_PROBE, accel))
    await topiccheck.verify(admin, topics)
    if group is not None:
        await _until_coordinator(admin, group)


async def _until_coordinator(admin: AIOKafkaAdminClient, group: str, attempts: int = 100) -> None:
    """Wait (up to ~10 s) until the coordinator of the consumer group `group` has loaded its groups.

    A broker's first consumer group makes it create ``__consumer_offsets``; a consumer joining before
    the coordinator has loaded that partition gets COORDINATOR_NOT_AVAILABLE or LOAD_IN_PROGRESS, which
    aiokafka logs as an ERROR or a WARNING before it retries. As with `_until_open`, after the wait the
    consumer's own retries take over.
    """
    for _ in range(attempts):
        try:
            (response,) = await admin.describe_consumer_groups([group])
            if all(described[0] == 0 for described in response.groups):  # each group's error code
                return
        except KafkaError as exc:
            if not exc.retriable:
                raise
        await asyncio.sleep(0.1)


async def _until_open(
    admin: AIOKafkaAdminClient, names: list[str], attempts: int = 100, *, probe: bool = True
) -> dict[str, int]:
    """Wait (up to ~10 s) until every partition of the topics `names` has a leader that has opened it.

    Returns each topic's partition count as last described (a new topic's metadata shows its
    partitions a moment after it is created, so this wait covers that too).

    With `probe`, "opened" is asked of each leader (`handoff.accel.kafka_open_probe`), which keeps a
    first start free of a consumer's false alarms; without it, a leader named counts as open. If the
    partitions are still not open after the wait, the consumers' own retries take over.
    """
    counts: dict[str, int] = {}
    for _ in range(attempts):
        asked: dict[int, dict[str, list[int]]] = {}  # leader -> topic -> partitions
        ready = True
        for topic in await admin.describe_topics(names):
            counts[topic["topic"]] = len(topic["partitions"])
            ready &= topic["error_code"] == 0 and bool(topic["partitions"])
            for part in topic["partitions"]:
                if part["leader"] < 0:
                    ready = False
                else:
                    by_topic = asked.setdefault(part["leader"], {})
                    by_topic.setdefault(topic["topic"], []).append(part["partition"])
        if ready and probe:
            from handoff.accel.kafka_open_probe import all_open  # only now: it uses this aiokafka's internals

            ready = await all_open(admin, asked)
        if ready:
            return counts
        await asyncio.sleep(0.1)
    return counts
