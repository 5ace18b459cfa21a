"""The `Operations` port of the embedded engine: jobs and configuration over the store's operations log.

Every change is decided against the fold of the log (`handoff.kernel.operations`), appended to it
(synced) and only then applied: to the job runner, which reads the fold on every tick, and to the
listeners the composition root adds (the engine's limits, the log level). Everything runs on the
engine's event loop with no await between deciding and appending, so changes apply one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from handoff.kernel.errors import HandoffError, InvalidArgument, Unavailable
from handoff.kernel.operations import (
    JOBS,
    SECTIONS,
    JobConfig,
    JobRun,
    JobRunRequested,
    JobStatus,
    OperationsEvent,
    OperationsState,
    decide_configuration,
    decide_job_config,
    initial_state,
    seal,
)
from handoff.storage import operations as O
from handoff.storage.kv import KeyValue

from .jobs import JobRunner

log = logging.getLogger(__name__)

ChangeHook = Callable[[OperationsState], None]
ALL = "all"


class OperationsLog:
    """The fold of a store's operations log, kept current as this process appends to it."""

    def __init__(self, kv: KeyValue, clock: Callable[[], str], defaults: Mapping[str, JobConfig] | None = None) -> None:
        self.kv, self.clock = kv, clock
        # The process's defaults (e.g. `--anchor-every`) hold until a recorded change replaces them.
        self.state = O.load(kv, initial_state(defaults or {}))
        self.hooks: list[ChangeHook] = []

    def job_config(self, name: str) -> JobConfig:
        """A job's config as the log (or the process's defaults) sets it."""
        return self.state.job(name)

    def record(self, event: OperationsEvent, actor: str) -> OperationsState:
        """Append the event to the log, then tell the hooks."""
        self.state = O.append(self.kv, self.state, seal(self.state, event, actor, self.clock()))
        for hook in self.hooks:
            try:
                hook(self.state)
            except Exception:  # a hook must not undo a recorded change
                log.exception("applying an operations change failed")
        return self.state


class EmbeddedOperations:
    """The five operations tools' port over one store and the engine's job runner."""

    def __init__(self, ops: OperationsLog, runner: JobRunner) -> None:
        self.ops, self.runner = ops, runner

    async def job_status(self, job: str | None) -> dict[str, JobStatus]:
        """Every job's status, or one job's (INVALID_ARGUMENT if unknown)."""
        if job is not None:
            self.ops.state.job(job)
        names = JOBS if job is None else (job,)
        return {name: self.runner.status(name) for name in names}

    async def run_job_now(self, job: str, actor: str) -> JobRun:
        """Record the request, then run the job and report its result."""
        self.ops.state.job(job)
        self.ops.record(JobRunRequested(job=job), actor)
        try:
            return await self.runner.run_now(job)
        except HandoffError:
            raise
        except Exception as exc:  # counted as a failed run; the operator hears why
            log.exception("job %s failed", job)
            raise Unavailable(f"the {job} job failed: {exc}") from exc

    async def update_job_config(self, job: str, enabled: bool | None, interval: int | None, actor: str) -> JobConfig:
        """Change a job's config; it is in force at the runner's next tick."""
        self.ops.record(decide_job_config(self.ops.state, job, enabled, interval), actor)
        return self.ops.job_config(job)

    async def configuration(self, section: str | None) -> tuple[dict[str, Any], int]:
        """One section (or all of them) and the configuration's version."""
        return sections(self.ops.state, section), self.ops.state.version

    async def update_configuration(
        self, section: str, values: Mapping[str, Any], expected_version: int | None, actor: str
    ) -> tuple[dict[str, Any], int]:
        """Change one section; refused whole (VERSION_CONFLICT, INVALID_ARGUMENT, LIMIT_EXCEEDED) or recorded."""
        state = self.ops.record(decide_configuration(self.ops.state, section, values, expected_version), actor)
        return sections(state, section), state.version


def sections(state: OperationsState, section: str | None) -> dict[str, Any]:
    """``{section: values}`` for one section, or for all of them (`None` or ``all``)."""
    if section is None or section == ALL:
        return {name: dict(state.configuration[name]) for name in SECTIONS}
    if section not in SECTIONS:
        raise InvalidArgument(
            f"unknown configuration section {section!r}; the sections are {[*SECTIONS, ALL]}", field="configSection"
        )
    return {section: dict(state.configuration[section])}
