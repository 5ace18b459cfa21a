"""The concurrency contract (tests/integration/test_concurrency.py) against `serve --kafka` + one worker."""

from integration.test_concurrency import ConcurrencyContract


class TestConcurrencyKafka(ConcurrencyContract):
    """`server` and `client`: the shared `handoff worker` + `handoff serve --kafka` of tests/kafka/conftest.py."""
