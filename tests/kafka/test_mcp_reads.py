"""The reads contract (tests/integration/test_reads.py: pagination, asOfVersion, lists, packages) in Kafka mode."""

from integration.test_reads import ReadsContract


class TestReadsKafka(ReadsContract):
    """`server` and `client`: the shared `handoff worker` + `handoff serve --kafka` of tests/kafka/conftest.py."""
