"""Analytics (CONTRACT §10): one idempotent fold over committed envelopes into hourly buckets, and its answers.

The view is four string-keyed mappings of JSON values, so the same fold runs over plain dicts in the
embedded engine and over faust tables in the Kafka-mode analytics app (whose tables are
at-least-once):

    applied[sessionKey]   the last version of the session folded in (the idempotency record)
    sessions[sessionKey]  {"status", "last": hour of its last event, "agents": [...]}
    handoffs[handoffId]   {"type", "from", "to", "at": request time (epoch s), "hour", "status"}
    buckets["<hour>|<agent or *>"]  counts of one hour, for everyone (``*``) and per agent involved

A value is read, changed and written back (never changed in place only), because a faust table
records a change only when a key is set. Time comes from each event's ``occurredAt``; the clock for
windows and pruning is passed in. A window of N hours is the N hourly buckets that end with the
clock's hour. Buckets, finished handoffs and idle sessions older than 7 days are pruned; the
applied versions are kept (one integer per session) so a replayed old event is still skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, assert_never

from handoff.kernel.events import (
    ContextAppended,
    Envelope,
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

Window = Literal["1h", "24h", "7d"]
WINDOW_HOURS: dict[str, int] = {"1h": 1, "24h": 24, "7d": 168}
KEEP_HOURS = 168
ALL = "*"
SYSTEM = "system"
BUSIEST = 10

Json = Any  # a JSON value: what a faust table with the json serializer stores


@dataclass
class AnalyticsView:
    """The analytics read model of one shard (the embedded engine has one; the faust app one per partition)."""

    applied: MutableMapping[str, Json] = field(default_factory=dict)
    sessions: MutableMapping[str, Json] = field(default_factory=dict)
    handoffs: MutableMapping[str, Json] = field(default_factory=dict)
    buckets: MutableMapping[str, Json] = field(default_factory=dict)


class KeyPrefixed(MutableMapping[str, Json]):
    """One shard's part of a shared mapping (a faust table): its keys, under a prefix."""

    def __init__(self, shared: MutableMapping[str, Json], prefix: str) -> None:
        self.shared = shared
        self.prefix = prefix

    def __getitem__(self, key: str) -> Json:
        return self.shared[self.prefix + key]

    def __setitem__(self, key: str, value: Json) -> None:
        self.shared[self.prefix + key] = value

    def __delitem__(self, key: str) -> None:
        del self.shared[self.prefix + key]

    def __iter__(self) -> Iterator[str]:
        n = len(self.prefix)
        return iter([k[n:] for k in list(self.shared.keys()) if k.startswith(self.prefix)])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def shard_view(shared: MutableMapping[str, Json], shard: str) -> AnalyticsView:
    """The view of one shard kept in one shared mapping, so its writes go to one place in order."""
    return AnalyticsView(
        applied=KeyPrefixed(shared, f"{shard}/a/"),
        sessions=KeyPrefixed(shared, f"{shard}/s/"),
        handoffs=KeyPrefixed(shared, f"{shard}/h/"),
        buckets=KeyPrefixed(shared, f"{shard}/b/"),
    )


def epoch_seconds(timestamp: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC timestamp such as ``2026-11-27T10:00:00.123Z``."""
    return datetime.fromisoformat(timestamp).timestamp()


def hour_of(seconds: float) -> int:
    """The hourly bucket a moment falls in."""
    return int(seconds // 3600)


def _bucket_key(hour: int, agent: str) -> str:
    return f"{hour}|{agent}"


def _empty_bucket() -> dict[str, Json]:
    return {"entries": 0, "handoffs": {}, "accept": {}, "decided": {}, "activity": {}, "seen": {}}


def _add(counts: dict[str, Json], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


@dataclass
class _Tally:
    """What one event adds to the buckets of its hour: the same for ``*`` and every agent it involves."""

    entries: int = 0
    handoffs: list[str] = field(default_factory=list)  # "type|outcome"
    accepts: list[tuple[str, float]] = field(default_factory=list)  # (target, seconds to accept)
    decided: list[tuple[str, str]] = field(default_factory=list)  # (target, outcome)
    agents: set[str] = field(default_factory=set)

    def apply(self, bucket: dict[str, Json], actor: str) -> None:
        bucket["entries"] += self.entries
        for key in self.handoffs:
            _add(bucket["handoffs"], key)
        for target, seconds in self.accepts:
            bucket["accept"].setdefault(target, []).append(seconds)
        for target, outcome in self.decided:
            _add(bucket["decided"].setdefault(target, {}), outcome)
        if actor != SYSTEM:
            _add(bucket["activity"], actor)


def _outcome(view: AnalyticsView, tally: _Tally, env: Envelope, hid: str, outcome: str, at: float) -> None:
    """A handoff reached `outcome` at `at`: count it under its type, and for its target when it decided.

    A record this event already changed (``v``, written before a crash) is read as it was before (``prev``).
    """
    handoff = view.handoffs.get(hid)
    if handoff is None:
        return  # requested before the view began (pruned, or never seen)
    done = handoff["v"] >= env.version
    before = handoff["prev"] if done else handoff["status"]
    if before == outcome:
        return
    tally.handoffs.append(f"{handoff['type']}|{outcome}")
    tally.agents.update((handoff["from"], handoff["to"]))
    if outcome == "accepted":
        tally.accepts.append((handoff["to"], round(at - handoff["at"], 3)))
    if outcome in ("accepted", "rejected", "expired") and before == "pending":
        tally.decided.append((handoff["to"], outcome))
    if not done:
        view.handoffs[hid] = {**handoff, "prev": handoff["status"], "status": outcome, "v": env.version}


def _requested(view: AnalyticsView, tally: _Tally, env: Envelope, event: HandoffRequested, at: float) -> None:
    if event.handoff_id not in view.handoffs:
        view.handoffs[event.handoff_id] = {
            "type": event.request_type, "from": event.source_agent, "to": event.target_agent,
            "at": at, "hour": hour_of(at), "status": "pending", "prev": None, "v": env.version,
        }  # fmt: skip
    tally.handoffs.append(f"{event.request_type}|requested")
    tally.agents.update((event.source_agent, event.target_agent))


def _session(view: AnalyticsView, env: Envelope, status: str | None, agents: Iterable[str], hour: int) -> None:
    record = view.sessions.get(env.session_key) or {"status": "active", "agents": [], "v": 0}
    if record["v"] >= env.version:
        return
    if status is not None:
        record["status"] = status
    record["last"] = hour
    record["v"] = env.version
    record["agents"] = sorted(set(record["agents"]).union(a for a in agents if a != SYSTEM))
    view.sessions[env.session_key] = record


def _tally(view: AnalyticsView, env: Envelope, at: float) -> tuple[_Tally, str | None]:  # noqa: C901 - one arm per type
    """What the event adds to the buckets, and the session status it sets (None: unchanged)."""
    tally, status = _Tally(agents={env.actor}), None
    event = env.event
    match event:
        case SessionRegistered():
            status = "active"
            tally.agents.add(event.agent_from)
        case ContextAppended():
            tally.entries = 1
            tally.agents.add(event.agent)
        case HandoffRequested():
            _requested(view, tally, env, event, at)
        case HandoffAccepted():
            _outcome(view, tally, env, event.handoff_id, "accepted", at)
        case HandoffCompleted():
            _outcome(view, tally, env, event.handoff_id, "completed", at)
            status = "completed" if event.session_completed else None
        case HandoffRejected():
            _outcome(view, tally, env, event.handoff_id, "rejected", at)
        case HandoffCancelled():
            _outcome(view, tally, env, event.handoff_id, "cancelled", at)
        case HandoffExpired():
            _outcome(view, tally, env, event.handoff_id, "expired", at)
        case SessionClosed():
            status = "closed"
            for hid in event.cancelled_handoffs:
                _outcome(view, tally, env, hid, "cancelled", at)
        case SessionExpired():
            status = "expired"
            for hid in event.cancelled_handoffs:
                _outcome(view, tally, env, hid, "expired", at)
        case SessionErased():
            status = "closed" if event.closed else None
            for hid in event.cancelled_handoffs:
                _outcome(view, tally, env, hid, "cancelled", at)
        case _:
            assert_never(event)
    return tally, status


def fold_analytics(view: AnalyticsView, env: Envelope) -> AnalyticsView:
    """Fold one committed event into the view; an event whose version the view has applied changes nothing.

    Every key it writes records the session version it reflects, and `applied` is written last: if a
    crash kept only the first few writes of an event, folding the event again completes it without
    counting anything twice (the faust shell keeps every key in one table, so its changelog holds a
    prefix of the writes).

    Each session's events must come in version order without a gap: `applied` only moves up, so an
    event that comes after a later version of its session is skipped for good. A shell that can skip
    events folds with `fold_in_order`.
    """
    if view.applied.get(env.session_key, 0) >= env.version:
        return view
    at = epoch_seconds(env.occurred_at)
    hour = hour_of(at)
    tally, status = _tally(view, env, at)
    _session(view, env, status, tally.agents, hour)
    for agent in (ALL, *sorted(tally.agents - {SYSTEM})):
        key = _bucket_key(hour, agent)
        bucket = view.buckets.get(key) or _empty_bucket()
        if bucket["seen"].get(env.session_key, 0) >= env.version:
            continue
        tally.apply(bucket, env.actor)
        bucket["seen"][env.session_key] = env.version
        view.buckets[key] = bucket
    view.applied[env.session_key] = env.version
    return view


def missing_before(view: AnalyticsView, env: Envelope) -> range:
    """The versions of `env`'s session below `env`'s own that the view has not folded (empty: none are).

    Folding `env` past them would leave them out for good. A session the view has not seen lacks its
    versions from 1: pruning keeps `applied`, and the Kafka log keeps every event, so only a consumer
    that skipped them gets there.
    """
    return range(view.applied.get(env.session_key, 0) + 1, env.version)


def fold_in_order(view: AnalyticsView, env: Envelope, earlier: Iterable[Envelope]) -> list[int]:
    """Fold the events of `earlier` that fill `env`'s gap (`missing_before`), in version order, then `env`.

    `earlier` is what the shell read back from the log for the gap. Versions it does not hold are gone
    from the log (a topic truncated by hand): `env` is folded past them rather than held for ever.
    Returns those versions (empty: the gap, if any, is filled).
    """
    missing = missing_before(view, env)
    found = {e.version: e for e in earlier if e.session_key == env.session_key and e.version in missing}
    for version in sorted(found):
        fold_analytics(view, found[version])
    fold_analytics(view, env)
    return [v for v in missing if v not in found]


def prune(view: AnalyticsView, now: float) -> int:
    """Drop what no window can reach any more (older than 7 days before `now`); how many keys went."""
    cutoff = hour_of(now) - KEEP_HOURS + 1
    gone = [k for k, v in list(view.buckets.items()) if int(k.split("|", 1)[0]) < cutoff]
    for key in gone:
        del view.buckets[key]
    finished = [k for k, v in list(view.handoffs.items()) if v["status"] != "pending" and v["hour"] < cutoff]
    for key in finished:
        del view.handoffs[key]
    idle = [k for k, v in list(view.sessions.items()) if v["last"] < cutoff]
    for key in idle:
        del view.sessions[key]
    return len(gone) + len(finished) + len(idle)


def _percentile(samples: list[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation, so every shell computes the same number)."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(round(q * len(ordered), 9)))
    return float(ordered[rank - 1])


def _merged(views: Sequence[AnalyticsView], hours: range, agent: str) -> dict[str, Json]:
    total = _empty_bucket()
    total["perHour"] = {}
    for hour in hours:
        for view in views:
            bucket = view.buckets.get(_bucket_key(hour, agent))
            if bucket is None:
                continue
            total["entries"] += bucket["entries"]
            _add(total["perHour"], str(hour), bucket["entries"])
            for key, n in bucket["handoffs"].items():
                _add(total["handoffs"], key, n)
            for target, samples in bucket["accept"].items():
                total["accept"].setdefault(target, []).extend(samples)
            for target, outcomes in bucket["decided"].items():
                for outcome, n in outcomes.items():
                    _add(total["decided"].setdefault(target, {}), outcome, n)
            for actor, n in bucket["activity"].items():
                _add(total["activity"], actor, n)
    return total


def _iso_hour(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H:00:00Z")


def _by_type(handoffs: dict[str, int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, n in sorted(handoffs.items()):
        request_type, outcome = key.split("|", 1)
        out.setdefault(request_type, {})[outcome] = n
    return out


def _targets(total: dict[str, Json]) -> dict[str, dict[str, Json]]:
    out: dict[str, dict[str, Json]] = {}
    for target in sorted(set(total["decided"]) | set(total["accept"])):
        decided = total["decided"].get(target, {})
        accepted = decided.get("accepted", 0)
        count = accepted + decided.get("rejected", 0) + decided.get("expired", 0)
        samples = total["accept"].get(target, [])
        out[target] = {
            "accepted": accepted, "rejected": decided.get("rejected", 0), "expired": decided.get("expired", 0),
            "acceptanceRate": round(accepted / count, 4) if count else None,
            "timeToAcceptSeconds": {"p50": _percentile(samples, 0.5), "p95": _percentile(samples, 0.95)},
        }  # fmt: skip
    return out


def _sessions_by_status(views: Sequence[AnalyticsView], first: int, agent: str | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for view in views:
        for record in view.sessions.values():
            if record["last"] >= first and (agent is None or agent in record["agents"]):
                _add(counts, record["status"])
    return dict(sorted(counts.items()))


def answer(views: Sequence[AnalyticsView], window: str, agent: str | None, now: float) -> dict[str, Json]:
    """The analytics of the window ending in `now`'s hour, over every shard, for everyone or one agent."""
    last = hour_of(now)
    first = last - WINDOW_HOURS[window] + 1
    total = _merged(views, range(first, last + 1), ALL if agent is None else agent)
    busiest = sorted(total["activity"].items(), key=lambda item: (-item[1], item[0]))[:BUSIEST]
    return {
        "window": window,
        "agent": agent,
        "from": _iso_hour(first),
        "until": _iso_hour(last + 1),
        "sessionsByStatus": _sessions_by_status(views, first, agent),
        "handoffs": _by_type(total["handoffs"]),
        "targets": _targets(total),
        "contextEntries": total["entries"],
        "contextEntriesPerHour": [  # the hours with entries, oldest first
            {"hour": _iso_hour(int(h)), "entries": n} for h, n in sorted(total["perHour"].items()) if n
        ],
        "busiestAgents": [{"agent": a, "events": n} for a, n in busiest],
    }
