"""The analytics app's shell never folds past a gap: it reads a session's skipped versions back from the partition,
a few windows back from the event, and folds past versions the log no longer holds with a WARNING naming them."""

from __future__ import annotations

import copy
import logging

import pytest

from handoff.kernel.codec import encode_envelope
from handoff.kernel.commands import AppendContext, RegisterSession
from handoff.kernel.events import Envelope
from projections.analytics import AnalyticsView, fold_analytics
from streams import analytics_gaps
from streams.analytics_gaps import fold_without_gaps, read_back

from .support import given

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _session(key: str, entries: int) -> list[Envelope]:
    appends = [AppendContext(session_key=key, context_type="message", content="hi", agent="alice")] * entries
    return given(RegisterSession(session_key=key, agent_from="alice"), *appends, prefix=key)


class Partition:
    """One partition of ``handoff.events`` in memory, from offset `first`; it counts the records it is asked for."""

    def __init__(self, envelopes: list[Envelope], first: int = 0) -> None:
        self.records = [(env.session_key.encode(), encode_envelope(env)) for env in envelopes]
        self.first = first
        self.read_records = 0

    async def read(self, start: int, end: int, key: bytes) -> list[bytes]:
        assert self.first <= start <= end
        self.read_records += end - start
        return [v for k, v in self.records[start:end] if k == key]

    async def __call__(self, partition: int, before: int, session: str, missing: range) -> list[Envelope]:
        return await read_back(self.read, self.first, before, session, missing)


def _interleaved(a: list[Envelope], b: list[Envelope]) -> list[Envelope]:
    out = []
    for i in range(max(len(a), len(b))):
        out += a[i : i + 1] + b[i : i + 1]
    return out


def _view(envelopes: list[Envelope]) -> tuple[dict, ...]:
    view = AnalyticsView()
    for env in envelopes:
        fold_analytics(view, env)
    return _state(view)


def _state(view: AnalyticsView) -> tuple[dict, ...]:
    return copy.deepcopy((dict(view.applied), dict(view.sessions), dict(view.handoffs), dict(view.buckets)))


async def test_an_event_the_stream_dropped_is_read_back_and_folded_before_its_later_versions() -> None:
    log = _interleaved(_session("s1", 6), _session("s2", 6))
    partition, view = Partition(log), AnalyticsView()
    for offset, env in enumerate(log):
        if offset != 4:  # s1 version 3, dropped
            await fold_without_gaps(view, env, 0, offset, partition)
    assert _state(view) == _view(log)
    await fold_without_gaps(view, log[4], 0, 4, partition)  # the reread delivers it after all: nothing changes
    assert _state(view) == _view(log)


async def test_the_first_version_of_a_session_dropped_is_read_back_too() -> None:
    log = _interleaved(_session("s1", 3), _session("s2", 3))
    partition, view = Partition(log), AnalyticsView()
    for offset, env in enumerate(log[1:], start=1):
        await fold_without_gaps(view, env, 0, offset, partition)
    assert _state(view) == _view(log)


async def test_events_in_order_are_folded_without_reading_the_log() -> None:
    log = _interleaved(_session("s1", 4), _session("s2", 4))
    partition, view = Partition(log), AnalyticsView()
    for offset, env in enumerate(log):
        await fold_without_gaps(view, env, 0, offset, partition)
    assert partition.read_records == 0
    assert _state(view) == _view(log)


async def test_reading_back_stops_at_the_window_that_holds_the_gap_not_at_the_start_of_the_partition() -> None:
    others = _session("o", 9) * 1000
    s1 = _session("s1", 3)
    log = [*others, *s1[:3], *others[:2000], s1[3]]  # version 3 two thousand records before version 4
    partition, view = Partition(log), AnalyticsView()
    for env in s1[:2]:
        fold_analytics(view, env)
    await fold_without_gaps(view, s1[3], 0, len(log) - 1, partition)
    assert _state(view) == _view(s1)
    assert partition.read_records == analytics_gaps.FIRST_WINDOW * 5 < len(log) // 2  # two windows back


async def test_versions_the_log_no_longer_holds_are_folded_past_with_a_warning_naming_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = _session("s1", 5)
    truncated = Partition(log, first=4)  # versions 1 to 4 deleted from the topic since the stream read them
    view = AnalyticsView()
    for env in log[:2]:
        fold_analytics(view, env)  # versions 3 and 4 dropped by the stream
    with caplog.at_level(logging.WARNING, logger=analytics_gaps.__name__):
        await fold_without_gaps(view, log[4], 0, 4, truncated)
        await fold_without_gaps(view, log[5], 0, 5, truncated)
    assert _state(view) == _view([*log[:2], *log[4:]])
    [record] = caplog.records
    assert (record.levelname, record.sessionKey, record.version) == ("WARNING", "s1", 5)
    assert "versions [3, 4] of session s1 were not found" in record.getMessage()
    assert (record.missingVersions, record.reason) == ([3, 4], "not in the log")


async def test_a_read_back_that_times_out_folds_past_the_gap_with_a_warning_saying_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def too_slow(partition: int, before: int, session: str, missing: range) -> list[Envelope]:
        raise TimeoutError

    log = _session("s1", 3)
    view = AnalyticsView()
    fold_analytics(view, log[0])
    with caplog.at_level(logging.WARNING, logger=analytics_gaps.__name__):
        await fold_without_gaps(view, log[3], 0, 3, too_slow)
    assert _state(view) == _view([log[0], log[3]])
    [record] = caplog.records
    assert record.missingVersions == [2, 3] and record.reason.startswith("not read back within")
