"""tests/integration/test_reads.py (pagination, asOfVersion, lists, packages) against `serve --kafka` + one worker."""

from integration import test_reads as suite

from kafka.mcp import adopt

globals().update(adopt(suite))
