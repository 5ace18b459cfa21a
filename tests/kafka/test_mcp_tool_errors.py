"""tests/integration/test_tool_errors.py (every error code through MCP) against `serve --kafka` + one worker."""

from integration import test_tool_errors as suite

from kafka.mcp import adopt

globals().update(adopt(suite))
