"""tests/integration/test_concurrency.py against `serve --kafka` + one worker (issue 3, first "Done when")."""

from integration import test_concurrency as suite

from kafka.mcp import adopt

globals().update(adopt(suite))
