"""A faust transport whose consumers read only committed records (not a speed-up: a correctness one).

faust-streaming reads ``read_committed`` only in its exactly-once mode, which would make the analytics
app, a read-only consumer, run a transactional producer per partition. The deciders append to
``handoff.events`` in Kafka transactions, so a reader at ``read_uncommitted`` would also count the
records of aborted ones. aiokafka takes the isolation level when the consumer starts, from a private
attribute that faust's consumer thread leaves at its default: set it there.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_kafka


class _ReadCommittedThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        if getattr(consumer, "_isolation_level", None) not in ("read_uncommitted", "read_committed"):
            raise RuntimeError("this aiokafka keeps its isolation level elsewhere: cannot read committed only")
        consumer._isolation_level = "read_committed"  # read by aiokafka when the consumer starts (0.14)
        return consumer


class _ReadCommittedConsumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> _ReadCommittedThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(faust_kafka.Transport):
    """faust's aiokafka transport, its consumers at ``read_committed``."""

    Consumer = _ReadCommittedConsumer
