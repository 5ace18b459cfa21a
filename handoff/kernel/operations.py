"""Operations (CONTRACT §9): the jobs, the configuration, their bounds, and the hash-chained operations log.

Pure, like the rest of the kernel: a change is decided against the `OperationsState` (refused with
INVALID_ARGUMENT, LIMIT_EXCEEDED or VERSION_CONFLICT, nothing recorded) and becomes one
`OperationsRecord`, sealed into the operations log's own hash chain (not a session's: the log is
the deployment's). `evolve` folds a record into the state; every process folds the same log, so a
change made through one process is in force in every other once it has read the record.

A record whose ``prevHash`` is not the head the fold has reached is *not applied* (`evolve`
returns the state unchanged): two processes that append at once both name the same head, the first
one in the log wins, and the second finds out when it folds its own record and decides again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from handoff.kernel.errors import InvalidArgument, LimitExceeded, VersionConflict
from handoff.kernel.types import Limits

JobName = Literal["session-expiry", "handoff-expiry", "dormancy", "retention", "anchor"]
JOBS: tuple[str, ...] = ("session-expiry", "handoff-expiry", "dormancy", "retention", "anchor")
INTERVAL_MIN = 1
INTERVAL_MAX = 7 * 24 * 3600
SECTIONS: tuple[str, ...] = ("retention", "limits", "monitoring")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
GENESIS = "0" * 64  # the prevHash of the first record


class JobConfig(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Whether a job runs on its own, and how often."""

    enabled: bool = True
    interval_seconds: int = 60


DEFAULT_JOBS: Mapping[str, JobConfig] = {
    "session-expiry": JobConfig(interval_seconds=30),
    "handoff-expiry": JobConfig(interval_seconds=30),
    "dormancy": JobConfig(interval_seconds=300),
    "retention": JobConfig(interval_seconds=3600),
    "anchor": JobConfig(enabled=False, interval_seconds=3600),  # enabled by `--anchor-dir`
}


class JobStats(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """How a job's runs went; kept in the store, so they survive restarts."""

    total_runs: int = 0
    successful_runs: int = 0
    failed_runs: int = 0
    average_duration_ms: float = 0.0
    last_run: str | None = None
    last_success: str | None = None
    last_failure: str | None = None


def record_run(stats: JobStats, at: str, duration_ms: float, ok: bool) -> JobStats:
    """The stats after one more run that started at `at` and took `duration_ms`."""
    total = stats.total_runs + 1
    average = stats.average_duration_ms + (duration_ms - stats.average_duration_ms) / total
    return JobStats(
        total_runs=total,
        successful_runs=stats.successful_runs + (1 if ok else 0),
        failed_runs=stats.failed_runs + (0 if ok else 1),
        average_duration_ms=round(average, 3),
        last_run=at,
        last_success=at if ok else stats.last_success,
        last_failure=stats.last_failure if ok else at,
    )


def merge_stats(parts: Iterable[JobStats]) -> JobStats:
    """One job's stats over several shares (Kafka mode: one per partition): counts add, times are the latest."""
    merged = JobStats()
    weighted = 0.0
    for s in parts:
        weighted += s.average_duration_ms * s.total_runs
        merged = JobStats(
            total_runs=merged.total_runs + s.total_runs,
            successful_runs=merged.successful_runs + s.successful_runs,
            failed_runs=merged.failed_runs + s.failed_runs,
            last_run=_latest(merged.last_run, s.last_run),
            last_success=_latest(merged.last_success, s.last_success),
            last_failure=_latest(merged.last_failure, s.last_failure),
        )
    average = round(weighted / merged.total_runs, 3) if merged.total_runs else 0.0
    return msgspec.structs.replace(merged, average_duration_ms=average)


def _latest(a: str | None, b: str | None) -> str | None:
    return b if a is None or (b is not None and b > a) else a


class JobStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One job as `get_job_status` shows it."""

    enabled: bool
    interval_seconds: int
    running: bool
    stats: JobStats


class JobRun(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What `run_job_now` reports: when the run started, how long it took and what it counted."""

    name: str
    started_at: str
    duration_ms: float
    result: dict[str, int]


# -- configuration ------------------------------------------------------------------------------

_POLICY_DAYS = {"standard": 30, "extended": 90, "short": 7}
_LIMIT_FIELDS: Mapping[str, str] = {  # the configurable limits: camelCase name -> Limits field
    "contentMaxBytes": "content_max_bytes",
    "objectMaxBytes": "object_max_bytes",
    "tokenBudgetMax": "token_budget_max",
    "pageMax": "page_max",
    "participantsMax": "participants_max",
    "openHandoffsMax": "open_handoffs_max",
}


def default_configuration() -> dict[str, dict[str, Any]]:
    """Every section's values before any change."""
    limits = Limits()
    return {
        "retention": {"eraseAfterDays": dict(_POLICY_DAYS)},
        "limits": {name: getattr(limits, attr) for name, attr in _LIMIT_FIELDS.items()},
        "monitoring": {"logLevel": "INFO"},
    }


def _whole(section: str, name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{section}.{name} must be a whole number", field=f"{section}.{name}")
    if not low <= value <= high:
        raise LimitExceeded(
            f"{section}.{name} is {value}; it must lie within {low}..{high}", field=f"{section}.{name}", limit=high
        )
    return value


def _check_value(section: str, name: str, value: object) -> object:
    """The value, if `name` is a key of `section` and `value` lies within its bounds."""
    if section == "retention" and name == "eraseAfterDays":
        if not isinstance(value, dict) or not value:
            where = "retention.eraseAfterDays"
            raise InvalidArgument(f"{where} must map policies to days", field=where)
        unknown = sorted(set(value) - set(_POLICY_DAYS))
        if unknown:
            raise InvalidArgument(f"unknown retention policies {unknown}; known: {sorted(_POLICY_DAYS)}")
        return {p: _whole(section, f"eraseAfterDays.{p}", d, 1, 3650) for p, d in value.items()}
    if section == "limits" and name in _LIMIT_FIELDS:
        # A limit can be tightened live, never loosened past the contract's default: every process
        # already refuses more than that before a command reaches its decider.
        return _whole(section, name, value, 1, getattr(Limits(), _LIMIT_FIELDS[name]))
    if section == "monitoring" and name == "logLevel":
        if value not in LOG_LEVELS:
            raise InvalidArgument(f"monitoring.logLevel must be one of {list(LOG_LEVELS)}", field="monitoring.logLevel")
        return value
    known = sorted(default_configuration()[section])
    raise InvalidArgument(f"{section} has no setting {name!r}; it has {known}", field=f"{section}.{name}")


def erase_after_days(state: OperationsState) -> dict[str, int]:
    """Days after expiry, close or completion until a session of each retention policy is erased."""
    return {str(k): int(v) for k, v in state.configuration["retention"]["eraseAfterDays"].items()}


def limits_of(configuration: Mapping[str, Mapping[str, Any]], base: Limits | None = None) -> Limits:
    """The `Limits` the configuration's ``limits`` section sets."""
    values = configuration.get("limits", {})
    changes = {attr: values[name] for name, attr in _LIMIT_FIELDS.items() if name in values}
    return msgspec.structs.replace(base or Limits(), **changes)


# -- the operations log -------------------------------------------------------------------------


class JobConfigured(msgspec.Struct, frozen=True, kw_only=True, tag="JobConfigured", rename="camel"):
    """A job's configuration was changed."""

    job: str
    enabled: bool
    interval_seconds: int


class ConfigurationUpdated(msgspec.Struct, frozen=True, kw_only=True, tag="ConfigurationUpdated", rename="camel"):
    """A configuration section was changed; `values` is the whole section after the change."""

    section: str
    values: dict[str, Any]
    version: int


class JobRunRequested(msgspec.Struct, frozen=True, kw_only=True, tag="JobRunRequested", rename="camel"):
    """An operator asked for a job to run now (recorded so the request is auditable)."""

    job: str


OperationsEvent = JobConfigured | ConfigurationUpdated | JobRunRequested


class OperationsRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One entry of the operations log: its position, who and when, the event, and its link in the chain."""

    position: int
    occurred_at: str
    actor: str
    event: OperationsEvent
    prev_hash: str
    hash: str = ""


_encoder = msgspec.json.Encoder(order="deterministic")
_decoder = msgspec.json.Decoder(OperationsRecord)


def seal_hash(record: OperationsRecord) -> str:
    """SHA-256 over the canonical encoding of the record without its hash (``prevHash`` included)."""
    return hashlib.sha256(_encoder.encode(msgspec.structs.replace(record, hash=""))).hexdigest()


def encode_record(record: OperationsRecord) -> bytes:
    """The record's bytes in the store or on the operations topic."""
    return _encoder.encode(record)


def decode_record(data: bytes) -> OperationsRecord:
    """A record from its bytes (msgspec errors when they are not one)."""
    return _decoder.decode(data)


@dataclass(frozen=True)
class OperationsState:
    """The fold of the operations log: job configs, configuration, its version, and the chain's head."""

    jobs: Mapping[str, JobConfig] = field(default_factory=lambda: dict(DEFAULT_JOBS))
    configuration: Mapping[str, Mapping[str, Any]] = field(default_factory=default_configuration)
    version: int = 0  # configuration changes so far (`expectedVersion` is checked against it)
    position: int = 0  # records applied
    head: str = GENESIS

    def job(self, name: str) -> JobConfig:
        """A job's config; INVALID_ARGUMENT for an unknown job."""
        config = self.jobs.get(name)
        if config is None:
            raise InvalidArgument(f"unknown job {name!r}; the jobs are {list(JOBS)}", field="jobName")
        return config


def initial_state(jobs: Mapping[str, JobConfig]) -> OperationsState:
    """The state before any record, with a process's own job defaults (e.g. from its flags) over the built-in ones."""
    return OperationsState(jobs={**DEFAULT_JOBS, **jobs})


def decide_job_config(state: OperationsState, job: str, enabled: bool | None, interval: int | None) -> JobConfigured:
    """The change of a job's config; INVALID_ARGUMENT (unknown job) or LIMIT_EXCEEDED (interval out of bounds)."""
    current = state.job(job)
    if interval is not None:
        _whole("config", "intervalSeconds", interval, INTERVAL_MIN, INTERVAL_MAX)
    return JobConfigured(
        job=job,
        enabled=current.enabled if enabled is None else enabled,
        interval_seconds=current.interval_seconds if interval is None else interval,
    )


def decide_configuration(
    state: OperationsState, section: str, values: Mapping[str, Any], expected_version: int | None
) -> ConfigurationUpdated:
    """The change of one section; VERSION_CONFLICT, INVALID_ARGUMENT or LIMIT_EXCEEDED refuse it whole."""
    if section not in SECTIONS:
        raise InvalidArgument(f"unknown configuration section {section!r}; the sections are {list(SECTIONS)}")
    if expected_version is not None and expected_version != state.version:
        raise VersionConflict(
            f"the configuration is at version {state.version}, not {expected_version}", currentVersion=state.version
        )
    if not values:
        raise InvalidArgument("values is empty: name at least one setting to change", field="values")
    merged = dict(state.configuration[section])
    for name, value in values.items():
        checked = _check_value(section, name, value)
        merged[name] = {**merged[name], **checked} if isinstance(checked, dict) else checked
    return ConfigurationUpdated(section=section, values=merged, version=state.version + 1)


def seal(state: OperationsState, event: OperationsEvent, actor: str, now: str) -> OperationsRecord:
    """The event as the next record of the log after `state`'s head."""
    record = OperationsRecord(
        position=state.position + 1, occurred_at=now, actor=actor, event=event, prev_hash=state.head
    )
    return msgspec.structs.replace(record, hash=seal_hash(record))


def follows(state: OperationsState, record: OperationsRecord) -> bool:
    """Whether the record is the next link of the chain the state has reached (else it lost a race)."""
    return record.prev_hash == state.head and record.position == state.position + 1 and record.hash == seal_hash(record)


def evolve(state: OperationsState, record: OperationsRecord) -> OperationsState:
    """The state after a record; unchanged when the record does not follow the head (see the module docstring)."""
    if not follows(state, record):
        return state
    jobs, configuration, version = state.jobs, state.configuration, state.version
    match record.event:
        case JobConfigured(job=job, enabled=enabled, interval_seconds=interval):
            jobs = {**jobs, job: JobConfig(enabled=enabled, interval_seconds=interval)}
        case ConfigurationUpdated(section=section, values=values, version=new):
            configuration, version = {**configuration, section: values}, new
        case JobRunRequested():
            pass
    return OperationsState(jobs, configuration, version, record.position, record.hash)


def fold(records: Iterable[OperationsRecord], state: OperationsState | None = None) -> OperationsState:
    """The state after every record, in log order."""
    state = state or OperationsState()
    for record in records:
        state = evolve(state, record)
    return state
