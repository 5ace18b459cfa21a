"""The operations tools of CONTRACT §9 over MCP: jobs and configuration, for operators.

Each handler checks who calls (with auth on, only the ``operator`` role: NOT_PERMITTED otherwise;
with ``--auth none``, anyone on loopback, recorded as actor ``local``), then asks the `Operations`
port. A process without that port (none is wired) answers UNAVAILABLE.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from handoff.kernel.errors import NotPermitted, Unavailable
from handoff.kernel.operations import JobRun, JobStatus
from handoff.mcp.deps import Deps
from handoff.ports import Operations

LOCAL_ACTOR = "local"  # who the operations log records as the actor with `--auth none`

JobNameStr = Annotated[
    str,
    msgspec.Meta(
        max_length=64, description="session-expiry, handoff-expiry, dormancy, retention or anchor", min_length=1
    ),
]
Interval = Annotated[int, msgspec.Meta(description="seconds between runs: 1 .. 604800 (7 days)")]


class GetJobStatusArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Arguments of get_job_status: one job, or every job."""

    job_name: JobNameStr | None = None


class RunJobNowArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Arguments of run_job_now."""

    job_name: JobNameStr


class JobConfigChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """The settings of a job to change; those left out stay as they are."""

    interval_seconds: Interval | None = None
    enabled: bool | None = None


class UpdateJobConfigArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Arguments of update_job_config."""

    job_name: JobNameStr
    config: JobConfigChange


class GetConfigurationArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Arguments of get_configuration: one section, or all."""

    config_section: Literal["retention", "limits", "monitoring", "all"] = "all"


class UpdateConfigurationArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Arguments of update_configuration: the settings of one section to change, checked against its version."""

    config_section: Literal["retention", "limits", "monitoring"]
    values: dict[str, Any]
    expected_version: Annotated[int, msgspec.Meta(ge=0)] | None = None


class GetJobStatusResult(msgspec.Struct, kw_only=True, rename="camel"):
    """`get_job_status`: each job's config, whether it runs now, and its stats."""

    success: bool
    jobs: dict[str, JobStatus]


class RunJobNowResult(msgspec.Struct, kw_only=True, rename="camel"):
    """`run_job_now`: when the run started, how long it took, what it counted."""

    success: bool
    job: JobRun


class JobConfigOut(msgspec.Struct, kw_only=True, rename="camel"):
    """A job's config after a change."""

    name: str
    enabled: bool
    interval_seconds: int


class UpdateJobConfigResult(msgspec.Struct, kw_only=True, rename="camel"):
    """`update_job_config`: the job's new config."""

    success: bool
    job: JobConfigOut


class ConfigurationResult(msgspec.Struct, kw_only=True, rename="camel"):
    """`get_configuration` and `update_configuration`: ``{section: values}`` and the configuration's version."""

    success: bool
    configuration: dict[str, Any]
    version: int


def _operations(deps: Deps) -> tuple[Operations, str]:
    """The port and the actor to record; NOT_PERMITTED for a principal that is not an operator."""
    principal = deps.principal
    if principal is not None and principal.role != "operator":
        raise NotPermitted(f"{principal.agent!r} is {principal.role!r}: the operations tools are for operators")
    if deps.operations is None:
        raise Unavailable("the operations tools are not available in this process")
    return deps.operations, LOCAL_ACTOR if principal is None else principal.agent


async def get_job_status(deps: Deps, a: GetJobStatusArgs) -> GetJobStatusResult:
    """`get_job_status`."""
    ops, _ = _operations(deps)
    return GetJobStatusResult(success=True, jobs=await ops.job_status(a.job_name))


async def run_job_now(deps: Deps, a: RunJobNowArgs) -> RunJobNowResult:
    """`run_job_now`."""
    ops, actor = _operations(deps)
    return RunJobNowResult(success=True, job=await ops.run_job_now(a.job_name, actor))


async def update_job_config(deps: Deps, a: UpdateJobConfigArgs) -> UpdateJobConfigResult:
    """`update_job_config`."""
    ops, actor = _operations(deps)
    config = await ops.update_job_config(a.job_name, a.config.enabled, a.config.interval_seconds, actor)
    job = JobConfigOut(name=a.job_name, enabled=config.enabled, interval_seconds=config.interval_seconds)
    return UpdateJobConfigResult(success=True, job=job)


async def get_configuration(deps: Deps, a: GetConfigurationArgs) -> ConfigurationResult:
    """`get_configuration`."""
    ops, _ = _operations(deps)
    configuration, version = await ops.configuration(a.config_section)
    return ConfigurationResult(success=True, configuration=configuration, version=version)


async def update_configuration(deps: Deps, a: UpdateConfigurationArgs) -> ConfigurationResult:
    """`update_configuration`."""
    ops, actor = _operations(deps)
    configuration, version = await ops.update_configuration(a.config_section, a.values, a.expected_version, actor)
    return ConfigurationResult(success=True, configuration=configuration, version=version)
