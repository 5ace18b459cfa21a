"""What `handoff verify` found: the problems, each naming its place, and the counts (embedded and Kafka alike)."""

from __future__ import annotations

from dataclasses import dataclass, field

from handoff.kernel.text import escape_controls


@dataclass(frozen=True)
class Problem:
    """One broken place: the session, the version, what is wrong, and where the record sits (Kafka).

    A break of the operations log (job and configuration changes) has no session: `operations` names
    its position there instead.
    """

    session: str | None
    version: int | None
    what: str
    at: str | None = None
    unchecked: bool = False  # not a break: something that could not be compared (a partition with no live worker)
    operations: int | None = None

    def __str__(self) -> str:
        if self.unchecked:
            return escape_controls(self.what)
        if self.operations is not None:
            where = f"operations log position {self.operations}"
        else:
            where = f"session {self.session!r}" if self.session is not None else "store"
        if self.version is not None:
            where += f" version {self.version}"
        if self.at is not None:
            where += f" ({self.at})"
        return escape_controls(f"{where}: {self.what}")


@dataclass
class Report:
    """The outcome of a verification."""

    sessions: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)
    live_digest: str = ""
    fresh_digest: str = ""
    seconds: float = 0.0
    erased: list[str] = field(default_factory=list)  # sessions erased (CONTRACT §8): chains hold, content gone
    operations: int = 0  # records of the operations log read
    operations_superseded: int = 0  # of them, the losers of an append race (Kafka): never applied, not a break

    @property
    def ok(self) -> bool:
        """Whether everything held."""
        return not self.problems

    @property
    def operations_ok(self) -> bool:
        """Whether the operations log's chain held."""
        return not any(p.operations is not None for p in self.problems)

    def to_dict(self) -> dict[str, object]:
        """The JSON form of ``handoff verify --json``."""
        return {
            "ok": self.ok,
            "sessions": self.sessions,
            "events": self.events,
            "problems": [
                {
                    "session": p.session,
                    "version": p.version,
                    "error": p.what,
                    **({"at": p.at} if p.at else {}),
                    **({"unchecked": True} if p.unchecked else {}),
                    **({"operationsPosition": p.operations} if p.operations is not None else {}),
                }
                for p in self.problems
            ],
            "erased": self.erased,
            "operations": {
                "records": self.operations,
                "superseded": self.operations_superseded,
                "ok": self.operations_ok,
            },
            "liveDigest": self.live_digest,
            "freshDigest": self.fresh_digest,
            "seconds": round(self.seconds, 3),
        }
