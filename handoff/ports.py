"""The ports the MCP adapter and the CLI talk to; the embedded engine and the Kafka adapter implement them.

Each port has the embedded implementation (`handoff.engine.service`) and the Kafka one
(`streams.client`); both pass the same contract tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from handoff.kernel.commands import Command
from handoff.kernel.events import Envelope
from handoff.kernel.operations import JobConfig, JobRun, JobStatus
from handoff.kernel.package import PackageEntry
from handoff.kernel.receipt import Receipt, receipt_of
from handoff.kernel.state import SessionState
from projections.queries import Page
from projections.views import ContextEntryView, HandoffView, SessionView, SummaryView


class Outcome:
    """What a successful write produced; `replayed` when an idempotent retry returned the first result.

    The receipt may be given, or derived on first use from the session state the write left
    (the engine's hot path builds it only when a caller asks, or an idempotency key needs it).
    A command that appends several events (`AppendContextBatch`) has the last as its envelope and
    receipt; `events` says how many it appended (the ones before take the versions just below).
    """

    __slots__ = ("envelope", "replayed", "events", "_receipt", "_state")

    def __init__(
        self,
        envelope: Envelope,
        receipt: Receipt | None = None,
        replayed: bool = False,
        *,
        state: SessionState | None = None,
        events: int = 1,
    ) -> None:
        if receipt is None and state is None:
            raise ValueError("an Outcome needs a receipt or the state to derive it from")
        self.envelope = envelope
        self.replayed = replayed
        self.events = events
        self._receipt = receipt
        self._state = state

    @property
    def receipt(self) -> Receipt:
        """The receipt: what the write's result reports about the session and the handoff."""
        if self._receipt is None:
            assert self._state is not None
            self._receipt = receipt_of(self._state, self.envelope, "")
        return self._receipt

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return (self.envelope, self.receipt, self.replayed) == (other.envelope, other.receipt, other.replayed)

    def __repr__(self) -> str:
        return f"Outcome({self.envelope!r}, {self.receipt!r}, replayed={self.replayed})"


@dataclass(frozen=True)
class Change:
    """A committed event, as subscribers of resources need to know it."""

    session_key: str
    version: int
    type: str
    handoff_ids: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()  # targets and sources of the handoffs it changed: their inboxes changed


class CommandBus(Protocol):
    """Where commands go to be decided by the single writer of their session."""

    async def submit(self, command: Command) -> Outcome:
        """Decide and commit; raises a HandoffError when refused or when the log is unreachable."""


class ReadModel(Protocol):
    """The query side. `as_of` reads the session as it was after its first `as_of` events."""

    async def session(self, key: str, as_of: int | None = None) -> SessionView | None:
        """A session view."""

    async def summary(self, key: str, as_of: int | None = None) -> SummaryView | None:
        """A session's running summary."""

    async def context(
        self, key: str, after: int, limit: int, as_of: int | None = None
    ) -> tuple[list[ContextEntryView], int | None]:
        """A page of context entries after a sequence number, and where the next page starts."""

    async def handoff(self, hid: str) -> HandoffView | None:
        """A handoff view."""

    async def package_entries(self, view: HandoffView) -> list[PackageEntry]:
        """The entries of a handoff's recorded package."""

    async def list_sessions(
        self, agent: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[SessionView]:
        """Sessions, newest first."""

    async def list_handoffs(
        self, target: str | None, source: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[HandoffView]:
        """Handoffs, newest first."""

    async def ready(self) -> bool:
        """Whether writes can be taken now."""


ChangeListener = Callable[[Change], None]


class ChangeFeed(Protocol):
    """Committed changes, for resource subscriptions."""

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener` (on the event loop) for every committed change."""


class Operations(Protocol):
    """The operations tools of CONTRACT §9: the deployment's jobs and configuration.

    The embedded implementation is `handoff.engine.operations.EmbeddedOperations`, the Kafka one
    `streams.operations.KafkaOperations`. Unknown jobs and sections are INVALID_ARGUMENT; a change
    out of bounds is LIMIT_EXCEEDED; a stale `expected_version` is VERSION_CONFLICT; nothing changes then.
    """

    async def job_status(self, job: str | None) -> dict[str, JobStatus]:
        """Every job's status (or one job's), stats added up over the deployment."""

    async def run_job_now(self, job: str, actor: str) -> JobRun:
        """Run a job now wherever it runs, and report when it started, how long it took and its counts."""

    async def update_job_config(self, job: str, enabled: bool | None, interval: int | None, actor: str) -> JobConfig:
        """Change a job's config; in force on every process without a restart."""

    async def configuration(self, section: str | None) -> tuple[dict[str, Any], int]:
        """``{section: values}`` (one section, or all for None) and the configuration's version."""

    async def update_configuration(
        self, section: str, values: Mapping[str, Any], expected_version: int | None, actor: str
    ) -> tuple[dict[str, Any], int]:
        """Change one section; the new section and version."""
