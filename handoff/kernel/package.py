"""The handoff package: what a receiving agent is given, built within a token budget and hashed.

Token estimate (the same everywhere): ``ceil(len(text) / 4)`` characters-per-token for any text,
plus ``ENTRY_OVERHEAD`` tokens per context entry for its header (sequence, type, agent, time).
The package is built from the newest entry backwards and stops at the first entry that does not
fit, so its entries are always one contiguous range ``fromSequence..toSequence``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

from handoff.kernel.events import PackageRecord
from handoff.kernel.types import AgentId

ENTRY_OVERHEAD = 8
SUMMARY_SHARE = 2  # the summary, key points and participants may use at most 1/2 of the budget


def estimate_tokens(text: str) -> int:
    """Estimated model tokens of a text: one per four characters, rounded up."""
    return (len(text) + 3) // 4


class PackageEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel"):
    """One context entry as a receiving agent sees it in a package."""

    sequence_number: int
    context_type: str
    agent: str
    content: str
    created_at: str

    def tokens(self) -> int:
        """Estimated tokens of this entry, header included."""
        return ENTRY_OVERHEAD + estimate_tokens(self.content)


class PackageHead(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The summary part of a package, produced by the summary projection."""

    summary: str
    key_points: list[str]
    participants: list[AgentId]


class _Hashed(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel"):
    summary: str
    key_points: list[str]
    participants: list[AgentId]
    entries: list[PackageEntry]
    from_sequence: int | None
    to_sequence: int | None
    token_budget: int
    estimated_tokens: int


_canonical = msgspec.json.Encoder(order="sorted")


def package_sha256(record: PackageRecord, entries: list[PackageEntry]) -> str:
    """SHA-256 of the canonical package: summary, key points, participants, entries and range."""
    body = _Hashed(
        summary=record.summary,
        key_points=record.key_points,
        participants=record.participants,
        entries=entries,
        from_sequence=record.from_sequence,
        to_sequence=record.to_sequence,
        token_budget=record.token_budget,
        estimated_tokens=record.estimated_tokens,
    )
    return hashlib.sha256(_canonical.encode(body)).hexdigest()


def _fit_head(head: PackageHead, allowance: int) -> tuple[PackageHead, int]:
    participants = list(head.participants)
    key_points = list(head.key_points)
    summary = head.summary

    def cost() -> int:
        return estimate_tokens(summary) + sum(estimate_tokens(p) for p in key_points + participants)

    while key_points and cost() > allowance:
        key_points.pop()
    # Many long agent names alone could exceed the budget; the newest participants go first.
    while participants and sum(estimate_tokens(p) for p in participants) > allowance:
        participants.pop()
    if cost() > allowance:
        room = max(0, allowance - sum(estimate_tokens(p) for p in participants)) * 4
        summary = summary[: max(0, room - 1)] + "…" if room < len(summary) else summary
    return PackageHead(summary=summary, key_points=key_points, participants=participants), cost()


def build_package(
    head: PackageHead, newest_first: Iterable[PackageEntry], token_budget: int
) -> tuple[PackageRecord, list[PackageEntry]]:
    """Build the package within the budget; returns its record and its entries, oldest first."""
    head, used = _fit_head(head, token_budget // SUMMARY_SHARE)
    chosen: list[PackageEntry] = []
    for entry in newest_first:
        cost = entry.tokens()
        if used + cost > token_budget:
            break
        used += cost
        chosen.append(entry)
    chosen.reverse()
    unsealed = PackageRecord(
        from_sequence=chosen[0].sequence_number if chosen else None,
        to_sequence=chosen[-1].sequence_number if chosen else None,
        entry_count=len(chosen),
        token_budget=token_budget,
        estimated_tokens=used,
        sha256="",
        summary=head.summary,
        key_points=head.key_points,
        participants=head.participants,
    )
    return msgspec.structs.replace(unsealed, sha256=package_sha256(unsealed, chosen)), chosen
