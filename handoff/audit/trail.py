"""`handoff audit SESSION`: the session's timeline, and every handoff package re-derived and re-hashed.

For each HandoffRequested, the session is folded up to the event before it, the package is built
again from that fold with the recorded budget (the same `build_package` the engine used), and both its
range and its SHA-256 are compared with what the event recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import assert_never

from handoff.kernel.erasure import is_erased
from handoff.kernel.errors import SessionNotFound
from handoff.kernel.events import (
    ContextAppended,
    Envelope,
    Event,
    HandoffAccepted,
    HandoffCancelled,
    HandoffCompleted,
    HandoffExpired,
    HandoffRejected,
    HandoffRequested,
    SessionClosed,
    SessionErased,
    SessionExpired,
    SessionRegistered,
)
from handoff.kernel.package import build_package
from handoff.kernel.text import escape_controls
from handoff.storage.kv import InMemoryKeyValue
from handoff.storage.log import EventLog
from projections.projector import Changes, OverlayReader, project
from projections.queries import Queries
from projections.summary import package_head, snippet
from projections.viewstore import StoreReader, changes_to_writes


@dataclass(frozen=True)
class PackageCheck:
    """A handoff's recorded package against the one re-derived from the log."""

    handoff_id: str
    version: int
    target_agent: str
    from_sequence: int | None
    to_sequence: int | None
    token_budget: int
    estimated_tokens: int
    recorded_sha256: str
    derived_sha256: str
    erased: bool = False  # its session was erased: the entries it was built from are gone, it cannot be re-derived

    @property
    def ok(self) -> bool:
        """Whether the re-derived package is the recorded one (an erased one is not held against the log)."""
        return self.erased or self.recorded_sha256 == self.derived_sha256


@dataclass(frozen=True)
class Step:
    """One line of the timeline."""

    version: int
    time: str
    actor: str
    type: str
    description: str
    package: PackageCheck | None = None


def describe(event: Event, actor: str) -> str:  # noqa: C901 - one case per type: a total match
    """One line saying what an event did."""
    match event:
        case SessionRegistered():
            return f"{event.agent_from} registered the session"
        case ContextAppended() if is_erased(event):
            return f"{event.agent} added {event.context_type} #{event.sequence_number} (erased)"
        case ContextAppended():
            return (
                f"{event.agent} added {event.context_type} #{event.sequence_number} "
                f"({len(event.content)} chars): {snippet(event.content, 60)}"
            )
        case HandoffRequested():
            p = event.package
            span = f"entries {p.from_sequence}..{p.to_sequence}" if p.entry_count else "no entries"
            return (
                f"{event.source_agent} requested a {event.request_type} handoff {event.handoff_id} to "
                f"{event.target_agent}: {span}, ~{p.estimated_tokens} of {p.token_budget} tokens"
            )
        case HandoffAccepted():
            return f"{event.agent} accepted handoff {event.handoff_id}"
        case HandoffCompleted():
            tail = "; the session is completed" if event.session_completed else ""
            return f"{event.agent} completed handoff {event.handoff_id}{tail}"
        case HandoffRejected():
            return f"{event.agent} rejected handoff {event.handoff_id}: {event.reason}"
        case HandoffCancelled():
            return f"{event.agent} cancelled handoff {event.handoff_id}" + (f": {event.reason}" if event.reason else "")
        case HandoffExpired():
            return f"handoff {event.handoff_id} expired ({event.reason})"
        case SessionClosed():
            why = f": {event.reason}" if event.reason else ""
            return f"{event.agent} closed the session{why} ({len(event.cancelled_handoffs)} open handoffs cancelled)"
        case SessionExpired():
            return f"the session expired ({len(event.cancelled_handoffs)} open handoffs expired)"
        case SessionErased():
            return f"the session was erased: {event.reason} ({len(event.cancelled_handoffs)} open handoffs cancelled)"
        case _:
            assert_never(event)


def _derive(queries: Queries, key: str, env: Envelope) -> PackageCheck:
    event = env.event
    assert isinstance(event, HandoffRequested)
    recorded = event.package
    summary = queries.reader.summary(key)
    assert summary is not None
    session = queries.session(key)
    assert session is not None
    derived, _ = build_package(
        package_head(summary), queries.entries_newest_first(key, session.last_sequence), recorded.token_budget
    )
    return PackageCheck(
        handoff_id=event.handoff_id,
        version=env.version,
        target_agent=event.target_agent,
        from_sequence=recorded.from_sequence,
        to_sequence=recorded.to_sequence,
        token_budget=recorded.token_budget,
        estimated_tokens=recorded.estimated_tokens,
        recorded_sha256=recorded.sha256,
        derived_sha256=derived.sha256,
        erased=is_erased(event),
    )


def timeline(log: EventLog, key: str) -> Iterator[Step]:
    """The session's steps in order, each handoff's package re-derived from the fold before it."""
    return timeline_of(key, log.stream(key))


def timeline_of(key: str, stream: Iterable[Envelope]) -> Iterator[Step]:
    """The steps of a session's stream read from any log (embedded store or Kafka partition)."""
    kv = InMemoryKeyValue()
    reader = StoreReader(kv)
    queries = Queries(kv)
    found = False
    for env in stream:
        found = True
        check = _derive(queries, key, env) if isinstance(env.event, HandoffRequested) else None
        yield Step(env.version, env.occurred_at, env.actor, env.type, describe(env.event, env.actor), check)
        changes = Changes()
        project(OverlayReader(reader, changes), env, changes)
        kv.write(changes_to_writes(changes, content_in_log=False))  # a scratch store: no log to read it from
    if not found:
        raise SessionNotFound(f"session {key!r} has no events in this store", sessionKey=key)


def step_dict(step: Step) -> dict[str, object]:
    """A step as JSON, camelCase."""
    out: dict[str, object] = {
        "version": step.version,
        "time": step.time,
        "actor": step.actor,
        "type": step.type,
        "description": step.description,
    }
    if step.package is not None:
        p = asdict(step.package)
        out["package"] = {
            "handoffId": p["handoff_id"],
            "targetAgent": p["target_agent"],
            "fromSequence": p["from_sequence"],
            "toSequence": p["to_sequence"],
            "tokenBudget": p["token_budget"],
            "estimatedTokens": p["estimated_tokens"],
            "recordedSha256": p["recorded_sha256"],
            "derivedSha256": p["derived_sha256"],
            "verified": step.package.ok and not step.package.erased,
            "erased": step.package.erased,
        }
    return out


def render_text(key: str, steps: list[Step]) -> str:
    """The timeline as aligned text, then one block per handoff package."""
    lines = [f"Session {key}: {len(steps)} events"]
    for s in steps:
        lines.append(f"v{s.version:<5} {s.time}  {s.actor[:16]:<16} {s.type:<17} {s.description}")
    checks = [s.package for s in steps if s.package is not None]
    if checks:
        lines.append("")
        lines.append(f"Handoff packages ({len(checks)}):")
    for c in checks:
        status = "erased: cannot be re-derived" if c.erased else "verified" if c.ok else "MISMATCH"
        span = f"{c.from_sequence}..{c.to_sequence}" if c.from_sequence is not None else "empty"
        lines.append(
            f"  {c.handoff_id} (v{c.version}) -> {c.target_agent}: entries {span}, "
            f"{c.estimated_tokens}/{c.token_budget} tokens, sha256 {c.recorded_sha256} [{status}]"
        )
        if not c.ok:
            lines.append(f"    re-derived: {c.derived_sha256}")
    return "\n".join(escape_controls(line) for line in lines)  # stored text must not drive the terminal
