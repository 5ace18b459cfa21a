"""The tool-errors contract (tests/integration/test_tool_errors.py) against `serve --kafka` + one worker."""

from integration.test_tool_errors import ToolErrorsContract


class TestToolErrorsKafka(ToolErrorsContract):
    """`server` and `client`: the shared `handoff worker` + `handoff serve --kafka` of tests/kafka/conftest.py."""
