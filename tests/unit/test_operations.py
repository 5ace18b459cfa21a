"""The operations kernel and its store: bounds, versioning, the hash chain, and the job runner's stats."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from handoff.engine.engine import Engine
from handoff.engine.jobs import JobRunner, KeyValueStats, expiry_action
from handoff.engine.operations import EmbeddedOperations, OperationsLog
from handoff.kernel.commands import ExpireHandoff, ExpireSession, RegisterSession, RequestHandoff
from handoff.kernel.errors import InvalidArgument, LimitExceeded, Unavailable, VersionConflict
from handoff.kernel.operations import (
    INTERVAL_MAX,
    JOBS,
    ConfigurationUpdated,
    JobConfigured,
    JobStats,
    OperationsState,
    decide_configuration,
    decide_job_config,
    erase_after_days,
    evolve,
    fold,
    limits_of,
    merge_stats,
    record_run,
    seal,
)
from handoff.kernel.times import format_time
from handoff.storage import operations as O
from handoff.storage.kv import InMemoryKeyValue

NOW = "2026-12-05T06:00:00.000000Z"


async def no_erasure(now: str) -> dict[str, int]:
    """An action that does nothing and says so: the runner's own behaviour is under test."""
    return {"erased": 0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_an_interval_within_one_second_and_seven_days_is_accepted() -> None:
    state = OperationsState()
    assert decide_job_config(state, "dormancy", None, 1).interval_seconds == 1
    assert decide_job_config(state, "dormancy", False, INTERVAL_MAX) == JobConfigured(
        job="dormancy", enabled=False, interval_seconds=INTERVAL_MAX
    )


@pytest.mark.parametrize("interval", [0, -5, INTERVAL_MAX + 1])
def test_an_interval_out_of_bounds_is_limit_exceeded(interval: int) -> None:
    with pytest.raises(LimitExceeded):
        decide_job_config(OperationsState(), "session-expiry", None, interval)


def test_an_unknown_job_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as refused:
        decide_job_config(OperationsState(), "session-cleanup", True, None)
    assert refused.value.code == "INVALID_ARGUMENT"


def test_a_configuration_change_keeps_the_other_settings_of_its_section_and_bumps_the_version() -> None:
    change = decide_configuration(OperationsState(), "retention", {"eraseAfterDays": {"short": 3}}, 0)
    assert change.values == {"eraseAfterDays": {"standard": 30, "extended": 90, "short": 3}}
    assert change.version == 1


@pytest.mark.parametrize(
    ("section", "values", "code"),
    [
        ("limits", {"contentMaxBytes": 0}, "LIMIT_EXCEEDED"),
        ("limits", {"contentMaxBytes": 2 * 1024 * 1024}, "LIMIT_EXCEEDED"),  # never looser than the contract
        ("limits", {"pageMax": "ten"}, "INVALID_ARGUMENT"),
        ("limits", {"nonsense": 1}, "INVALID_ARGUMENT"),
        ("retention", {"eraseAfterDays": {"forever": 1}}, "INVALID_ARGUMENT"),
        ("retention", {"eraseAfterDays": {"short": 0}}, "LIMIT_EXCEEDED"),
        ("monitoring", {"logLevel": "LOUD"}, "INVALID_ARGUMENT"),
        ("monitoring", {}, "INVALID_ARGUMENT"),
        ("paint", {"colour": 1}, "INVALID_ARGUMENT"),
    ],
)
def test_an_invalid_configuration_change_is_refused_with_a_code(section: str, values: dict, code: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decide_configuration(OperationsState(), section, values, None)
    assert refused.value.code == code


def test_a_stale_expected_version_is_a_version_conflict() -> None:
    change = decide_configuration(OperationsState(), "limits", {"pageMax": 50}, 0)
    state = fold([seal(OperationsState(), change, "op", NOW)])
    assert state.version == 1
    with pytest.raises(VersionConflict):
        decide_configuration(state, "limits", {"pageMax": 10}, 0)


def test_the_limits_section_sets_the_limits() -> None:
    change = decide_configuration(OperationsState(), "limits", {"pageMax": 50, "participantsMax": 3}, None)
    limits = limits_of({"limits": change.values})
    assert (limits.page_max, limits.participants_max, limits.content_max_bytes) == (50, 3, 1024 * 1024)


def test_records_form_a_hash_chain_and_a_record_off_the_head_is_not_applied() -> None:
    first = seal(OperationsState(), JobConfigured(job="dormancy", enabled=False, interval_seconds=9), "op", NOW)
    state = evolve(OperationsState(), first)
    second = seal(state, ConfigurationUpdated(section="monitoring", values={"logLevel": "DEBUG"}, version=1), "op", NOW)
    assert second.prev_hash == first.hash and second.position == 2
    rival = seal(OperationsState(), JobConfigured(job="anchor", enabled=True, interval_seconds=5), "other", NOW)
    after = fold([first, rival, second])  # the rival named the same head as `first`: it lost the race
    assert after.position == 2 and after.head == second.hash
    assert after.jobs["dormancy"].interval_seconds == 9 and not after.jobs["anchor"].enabled
    tampered = msgspec.structs.replace(second, actor="someone-else")
    assert evolve(state, tampered) == state


def test_the_store_refuses_a_record_that_does_not_follow_its_head() -> None:
    kv = InMemoryKeyValue()
    record = seal(OperationsState(), JobConfigured(job="retention", enabled=True, interval_seconds=60), "op", NOW)
    state = O.append(kv, OperationsState(), record)
    with pytest.raises(VersionConflict):
        O.append(kv, OperationsState(), record)
    assert O.load(kv) == state


def test_run_stats_count_runs_and_keep_a_running_average() -> None:
    stats = record_run(JobStats(), "t1", 10.0, True)
    stats = record_run(stats, "t2", 30.0, False)
    assert (stats.total_runs, stats.successful_runs, stats.failed_runs) == (2, 1, 1)
    assert stats.average_duration_ms == 20.0
    assert (stats.last_run, stats.last_success, stats.last_failure) == ("t2", "t1", "t2")


def test_stats_of_several_shares_add_up() -> None:
    a = record_run(JobStats(), "t1", 10.0, True)
    b = record_run(record_run(JobStats(), "t2", 40.0, True), "t3", 40.0, False)
    merged = merge_stats([a, b])
    assert (merged.total_runs, merged.successful_runs, merged.failed_runs) == (3, 2, 1)
    assert merged.average_duration_ms == 30.0 and merged.last_run == "t3" and merged.last_success == "t2"


def _runner(kv: InMemoryKeyValue, ops: OperationsLog, fail: bool = False) -> JobRunner:
    async def failing(now: str) -> dict[str, int]:
        raise RuntimeError("broken on purpose")

    actions = {name: no_erasure for name in JOBS}
    if fail:
        actions["dormancy"] = failing
    return JobRunner(actions, ops.job_config, KeyValueStats(kv), lambda: NOW, tick=0.01)


@pytest.mark.anyio
async def test_stats_survive_a_new_runner_on_the_same_store() -> None:
    kv = InMemoryKeyValue()
    ops = OperationsLog(kv, lambda: NOW)
    run = await _runner(kv, ops).run_now("retention")
    assert run.result == {"erased": 0} and run.name == "retention" and run.started_at == NOW
    again = _runner(kv, OperationsLog(kv, lambda: NOW))  # a restart: a new log fold and runner on the same store
    assert again.status("retention").stats.total_runs == 1
    assert again.status("retention").stats.last_success == NOW


@pytest.mark.anyio
async def test_a_failed_run_is_counted_as_failed_and_raised() -> None:
    kv = InMemoryKeyValue()
    runner = _runner(kv, OperationsLog(kv, lambda: NOW), fail=True)
    with pytest.raises(RuntimeError):
        await runner.run_now("dormancy")
    stats = runner.status("dormancy").stats
    assert (stats.failed_runs, stats.successful_runs, stats.last_failure) == (1, 0, NOW)


@pytest.mark.anyio
async def test_a_disabled_job_does_not_run_and_enabling_it_takes_effect_without_a_restart() -> None:
    kv = InMemoryKeyValue()
    ops = OperationsLog(kv, lambda: NOW)
    operations = EmbeddedOperations(ops, runner := _runner(kv, ops))
    for name in JOBS:
        await operations.update_job_config(name, False, None, "op")
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.sleep(0.1)
        assert runner.status("retention").stats.total_runs == 0
        await operations.update_job_config("retention", True, 1, "op")
        for _ in range(200):
            if runner.status("retention").stats.total_runs:
                break
            await asyncio.sleep(0.01)
        assert runner.status("retention").stats.total_runs == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.anyio
async def test_changes_are_recorded_in_the_operations_log_and_survive_a_restart() -> None:
    kv = InMemoryKeyValue()
    ops = OperationsLog(kv, lambda: NOW)
    operations = EmbeddedOperations(ops, _runner(kv, ops))
    await operations.update_job_config("anchor", True, 120, "alice")
    configuration, version = await operations.update_configuration("monitoring", {"logLevel": "DEBUG"}, 0, "alice")
    assert (configuration, version) == ({"monitoring": {"logLevel": "DEBUG"}}, 1)
    await operations.run_job_now("retention", "bob")
    logged = list(O.records(kv))
    assert [type(r.event).__name__ for r in logged] == ["JobConfigured", "ConfigurationUpdated", "JobRunRequested"]
    assert [r.actor for r in logged] == ["alice", "alice", "bob"]
    restarted = OperationsLog(kv, lambda: NOW)
    assert restarted.job_config("anchor").interval_seconds == 120
    assert restarted.state.configuration["monitoring"]["logLevel"] == "DEBUG" and restarted.state.version == 1


@pytest.mark.anyio
async def test_a_refused_change_records_nothing() -> None:
    kv = InMemoryKeyValue()
    ops = OperationsLog(kv, lambda: NOW)
    operations = EmbeddedOperations(ops, _runner(kv, ops))
    with pytest.raises(LimitExceeded):
        await operations.update_job_config("dormancy", None, 0, "op")
    with pytest.raises(VersionConflict):
        await operations.update_configuration("limits", {"pageMax": 10}, 3, "op")
    with pytest.raises(InvalidArgument):
        await operations.run_job_now("nope", "op")
    assert list(O.records(kv)) == [] and ops.state.position == 0


def test_erase_after_days_follows_the_retention_section() -> None:
    change = decide_configuration(OperationsState(), "retention", {"eraseAfterDays": {"standard": 10}}, None)
    state = fold([seal(OperationsState(), change, "op", NOW)])
    assert erase_after_days(state) == {"standard": 10, "extended": 90, "short": 7}


@pytest.mark.anyio
async def test_the_expiry_jobs_each_expire_only_their_kind_and_nothing_twice() -> None:
    at = [datetime(2026, 12, 1, tzinfo=UTC)]
    kv = InMemoryKeyValue()
    engine = Engine(kv, sync=False, clock=lambda: format_time(at[0]))
    engine.write_now([RegisterSession(session_key=f"s{i}", agent_from="a", retention_policy="short") for i in range(3)])
    engine.write_now([RequestHandoff(session_key="s0", target_agent="b", accept_within=60)])
    sessions = expiry_action(kv, engine.state, engine.submit, engine.clock, ExpireSession)
    handoffs = expiry_action(kv, engine.state, engine.submit, engine.clock, ExpireHandoff)
    await engine.start()
    try:
        at[0] += timedelta(seconds=61)
        assert await sessions(format_time(at[0])) == {"expired": 0}  # the handoff is due, no session yet
        assert await handoffs(format_time(at[0])) == {"expired": 1}
        assert await handoffs(format_time(at[0])) == {"expired": 0}
        at[0] += timedelta(hours=4)
        assert await handoffs(format_time(at[0])) == {"expired": 0}
        assert await sessions(format_time(at[0])) == {"expired": 3}
        assert await sessions(format_time(at[0])) == {"expired": 0}
    finally:
        await engine.stop()
    assert {engine.state(f"s{i}").status for i in range(3)} == {"expired"}  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_run_job_now_of_a_failing_job_is_unavailable_with_the_reason_and_counted() -> None:
    kv = InMemoryKeyValue()
    ops = OperationsLog(kv, lambda: NOW)
    operations = EmbeddedOperations(ops, runner := _runner(kv, ops, fail=True))
    with pytest.raises(Unavailable, match="broken on purpose"):
        await operations.run_job_now("dormancy", "op")
    assert runner.status("dormancy").stats.failed_runs == 1
