"""The analytics fold: idempotent, order-respecting, gap-free, shardable, windowed by hour, pruned after 7 days."""

from __future__ import annotations

import copy
from collections.abc import MutableMapping
from datetime import UTC, datetime

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    CloseSession,
    CompleteHandoff,
    RegisterSession,
    RejectHandoff,
    RequestHandoff,
)
from projections.analytics import (
    AnalyticsView,
    answer,
    epoch_seconds,
    fold_analytics,
    fold_in_order,
    missing_before,
    prune,
    shard_view,
)

from .strategies import programs, run_program
from .support import H1, H2
from .support import given as given_events

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
START = epoch_seconds("2026-11-27T10:00:00.000Z")


def _spread(log, minutes):
    """The log with its events moved `minutes[i]` minutes apart, so they fall into several hourly buckets."""
    at, out = START, []
    for env, step in zip(log, minutes, strict=False):
        at += step * 60
        iso = datetime.fromtimestamp(at, UTC)
        out.append(msgspec.structs.replace(env, occurred_at=iso.isoformat(timespec="milliseconds")[:-6] + "Z"))
    return out


def _fold(envelopes, view=None):
    view = view or AnalyticsView()
    for env in envelopes:
        fold_analytics(view, env)
    return view


def _snapshot(view):
    return copy.deepcopy((dict(view.applied), dict(view.sessions), dict(view.handoffs), dict(view.buckets)))


def _answers(views, now):
    return [answer(views, w, a, now) for w in ("1h", "24h", "7d") for a in (None, "alice", "bob", "carol")]


logs = st.builds(
    lambda program, minutes: _spread(run_program(program).log, minutes),
    programs,
    st.lists(st.integers(0, 200), min_size=60, max_size=60),
)


@PROPERTY
@given(logs)
def test_folding_the_log_twice_changes_nothing(log):
    once = _fold(log)
    before = _snapshot(once)
    assert _snapshot(_fold(log, once)) == before


@PROPERTY
@given(logs, st.data())
def test_folding_a_prefix_then_the_rest_equals_folding_all(log, data):
    cut = data.draw(st.integers(0, len(log)))
    assert _snapshot(_fold(log[cut:], _fold(log[:cut]))) == _snapshot(_fold(log))


@PROPERTY
@given(logs, st.data())
def test_replayed_events_as_at_least_once_delivery_gives_them_change_nothing(log, data):
    replayed = []
    for i, env in enumerate(log):
        replayed.append(env)
        if data.draw(st.booleans()):  # redeliver an earlier stretch, as a consumer restarted from an old offset
            replayed.extend(log[data.draw(st.integers(0, i)) : i + 1])
    assert _snapshot(_fold(replayed)) == _snapshot(_fold(log))


def _delivered_without(log, dropped, read_back=True):
    """The log folded as the faust shell folds it when its stream dropped the events at `dropped`: each event after
    the earlier versions of its session that the view lacks, read back from the log before it (none if not
    `read_back`: a topic truncated since); then the dropped events delivered again, as a reread does."""
    view, gone = AnalyticsView(), []
    for i, env in enumerate(log):
        if i in dropped:
            continue
        earlier = [e for e in log[:i] if e.session_key == env.session_key] if read_back else []
        gone += fold_in_order(view, env, earlier)
    for i in sorted(dropped):
        fold_in_order(view, log[i], [])
    return view, gone


@PROPERTY
@given(logs, st.data())
def test_an_event_dropped_then_read_back_before_its_later_versions_counts_as_the_whole_log(log, data):
    dropped = set(data.draw(st.lists(st.integers(0, max(0, len(log) - 1)), max_size=3)))
    view, gone = _delivered_without(log, dropped)
    assert gone == []
    assert _snapshot(view) == _snapshot(_fold(log))


def test_an_event_dropped_and_folded_past_is_missing_for_good_which_is_what_fold_in_order_prevents():
    log = _at(_workload(), [0, 1, 1, 1, 5, 10, 60, 2, 1])
    past = _fold(log[:2] + log[3:] + log[2:3])  # the dropped entry comes again after its later versions
    assert _snapshot(past) != _snapshot(_fold(log))
    assert _snapshot(_delivered_without(log, {2})[0]) == _snapshot(_fold(log))


def test_a_gap_that_the_log_no_longer_holds_is_folded_past_and_its_versions_reported():
    log = _at(_workload(), [0, 1, 1, 1, 5, 10, 60, 2, 1])
    view, gone = _delivered_without(log, {2, 3}, read_back=False)
    assert gone == [log[2].version, log[3].version]
    assert _snapshot(view) == _snapshot(_fold(log[:2] + log[4:]))  # what folding past the gap gives


def test_a_gap_partly_read_back_folds_what_was_found_in_order_and_reports_the_rest():
    log = _at(_workload(), [0, 1, 1, 1, 5, 10, 60, 2, 1])
    view = _fold(log[:2])
    assert list(missing_before(view, log[5])) == [3, 4, 5]
    assert fold_in_order(view, log[5], [log[4], log[0], log[3]]) == [3]
    assert _snapshot(view) == _snapshot(_fold(log[:2] + log[3:6]))


def test_a_session_first_seen_after_its_first_version_has_a_gap_from_version_1():
    log = _at(_workload(), [0, 1, 1, 1, 5, 10, 60, 2, 1])
    assert list(missing_before(AnalyticsView(), log[2])) == [1, 2]
    assert list(missing_before(AnalyticsView(), log[0])) == []


def test_an_event_the_view_has_applied_has_no_gap_and_folds_to_nothing():
    log = _at(_workload(), [0, 1, 1, 1, 5, 10, 60, 2, 1])
    view = _fold(log)
    before = _snapshot(view)
    assert [list(missing_before(view, env)) for env in log] == [[]] * len(log)
    assert fold_in_order(view, log[3], []) == []
    assert _snapshot(view) == before


@PROPERTY
@given(logs, st.integers(2, 4))
def test_shards_by_session_answer_what_one_view_answers(log, shards):
    views = [AnalyticsView() for _ in range(shards)]
    for env in log:
        fold_analytics(views[hash(env.session_key) % shards], env)
    now = epoch_seconds(log[-1].occurred_at) if log else START
    assert _answers(views, now) == _answers([_fold(log)], now)


@PROPERTY
@given(logs)
def test_pruning_keeps_every_window_answer_the_same(log):
    view = _fold(log)
    now = epoch_seconds(log[-1].occurred_at) + 3 * 86_400 if log else START
    before = _answers([view], now)
    prune(view, now)
    assert _answers([view], now) == before
    assert all(int(k.split("|")[0]) >= int(now // 3600) - 167 for k in view.buckets)


def _workload():
    return given_events(
        RegisterSession(session_key="s1", agent_from="alice"),
        AppendContext(session_key="s1", context_type="message", content="hi", agent="alice"),
        AppendContext(session_key="s1", context_type="task", content="do it", agent="alice"),
        RequestHandoff(session_key="s1", target_agent="bob", request_type="context_transfer"),
        AcceptHandoff(session_key="s1", handoff_id=H1, agent="bob"),
        CompleteHandoff(session_key="s1", handoff_id=H1, agent="bob"),
        RequestHandoff(session_key="s1", target_agent="carol", request_type="collaboration"),
        RejectHandoff(session_key="s1", handoff_id=H2, agent="carol", reason="busy"),
        CloseSession(session_key="s1", agent="bob"),
    )


def _at(log, minutes):
    return _spread(log, minutes)


def test_a_known_workload_gives_exact_counts_rates_and_times():
    log = _at(_workload(), [0, 1, 1, 1, 5, 10, 60, 2, 1])
    now = epoch_seconds(log[-1].occurred_at)
    got = answer([_fold(log)], "24h", None, now)
    assert got["sessionsByStatus"] == {"closed": 1}
    assert got["handoffs"] == {
        "collaboration": {"rejected": 1, "requested": 1},
        "context_transfer": {"accepted": 1, "completed": 1, "requested": 1},
    }
    assert got["targets"]["bob"]["acceptanceRate"] == 1.0
    assert got["targets"]["bob"]["timeToAcceptSeconds"] == {"p50": 300.0, "p95": 300.0}
    assert got["targets"]["carol"]["acceptanceRate"] == 0.0
    assert got["targets"]["carol"]["timeToAcceptSeconds"] == {"p50": None, "p95": None}
    assert got["contextEntries"] == 2
    assert got["busiestAgents"][0] == {"agent": "alice", "events": 4}


def test_the_one_hour_window_sees_only_the_current_hour():
    log = _at(_workload(), [0, 1, 1, 1, 5, 10, 60, 2, 1])
    now = epoch_seconds(log[-1].occurred_at)
    got = answer([_fold(log)], "1h", None, now)
    assert got["contextEntries"] == 0
    assert got["handoffs"] == {"collaboration": {"rejected": 1, "requested": 1}}
    assert "bob" not in got["targets"]


def test_an_agent_filter_counts_only_what_involves_the_agent():
    log = _at(_workload(), [0, 1, 1, 1, 5, 10, 60, 2, 1])
    now = epoch_seconds(log[-1].occurred_at)
    got = answer([_fold(log)], "7d", "carol", now)
    assert got["handoffs"] == {"collaboration": {"rejected": 1, "requested": 1}}
    assert got["contextEntries"] == 0
    assert got["sessionsByStatus"] == {"closed": 1}
    assert answer([_fold(log)], "7d", "nobody", now)["sessionsByStatus"] == {}


class _Crash(Exception):
    pass


class _Store(MutableMapping):
    """A table as faust's RocksDB store behaves: reads and writes copy; it dies after `writes` writes."""

    def __init__(self, data=None, writes=-1):
        self.data = {} if data is None else data
        self.left = writes

    def __getitem__(self, key):
        return copy.deepcopy(self.data[key])

    def __setitem__(self, key, value):
        if self.left == 0:
            raise _Crash
        self.left -= 1
        self.data[key] = copy.deepcopy(value)

    def __delitem__(self, key):
        del self.data[key]

    def __iter__(self):
        return iter(list(self.data))

    def __len__(self):
        return len(self.data)


@PROPERTY
@given(logs, st.data())
def test_a_crash_after_any_write_then_a_replay_counts_every_event_once(log, data):
    clean = _Store()
    _fold(log, shard_view(clean, "0"))
    crashed = _Store(writes=data.draw(st.integers(0, len(clean.data) * 3)))
    try:
        _fold(log, shard_view(crashed, "0"))
    except _Crash:
        pass
    restarted = _Store(crashed.data)  # what survived, folded again from an older offset
    _fold(log, shard_view(restarted, "0"))
    assert restarted.data == clean.data
