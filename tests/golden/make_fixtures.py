"""Write the golden fixtures once: one sealed wire record per event type, one record per command type.

Run ``python tests/golden/make_fixtures.py`` after adding an event type or bumping a schemaVersion.
It never overwrites a file: a published fixture is never edited, today's code must keep decoding it.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import msgspec

from handoff.kernel.codec import encode_envelope
from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    AppendContextBatch,
    CancelHandoff,
    CloseSession,
    Command,
    CompleteHandoff,
    ContextItem,
    EraseSession,
    ExpireHandoff,
    ExpireSession,
    RegisterSession,
    RejectHandoff,
    RequestHandoff,
)
from handoff.kernel.decide import Ctx, execute_all
from handoff.kernel.events import Envelope, HandoffRequested
from handoff.kernel.package import build_package
from handoff.kernel.state import SessionState
from handoff.storage.datakeys import DataCipher
from handoff.storage.kv import InMemoryKeyValue
from projections.queries import Queries
from projections.replay import fold_events
from projections.summary import package_head
from projections.viewstore import StoreReader

HERE = Path(__file__).parent


class _Writer:
    """The write path of a shell, with a fixed clock and fixed ids, keeping every envelope."""

    def __init__(self) -> None:
        self.kv = InMemoryKeyValue()
        self.states: dict[str, SessionState] = {}
        self.envelopes: list[Envelope] = []
        self.ticks = itertools.count()
        numbers = itertools.count(1)
        self.new_id = lambda: f"01JDQ7Z0{next(numbers):018d}"
        self.ciphers = {"gone": DataCipher(bytes(32))}  # a session with a data key, so it can be erased

    def __call__(self, command: Command) -> Envelope:
        state = self.states.get(command.session_key)
        package = None
        if isinstance(command, RequestHandoff):
            assert state is not None
            summary = StoreReader(self.kv).summary(command.session_key)
            assert summary is not None
            entries = Queries(self.kv).entries_newest_first(command.session_key, state.last_sequence)
            package, _ = build_package(package_head(summary), entries, command.token_budget or 4000)
        now = f"2026-11-27T10:{next(self.ticks):02d}:00.000Z"
        ctx = Ctx(now=now, new_id=self.new_id, package=package)
        state, sealed = execute_all(state, command, ctx, self.ciphers.get(command.session_key))
        self.states[command.session_key] = state
        envelopes = [env for env, _ in sealed]
        fold_events(self.kv, envelopes)
        self.envelopes.extend(envelopes)
        return envelopes[-1]


def history() -> tuple[dict[str, Envelope], dict[str, Command]]:
    """One sealed envelope of every event type and one command of every type, from three realistic sessions."""
    write = _Writer()
    first_event: dict[str, Envelope] = {}
    first_command: dict[str, Command] = {}
    requested: dict[str, str] = {}

    def run(command: Command) -> None:
        if getattr(command, "handoff_id", None) == "LAST":
            command = msgspec.structs.replace(command, handoff_id=requested[command.session_key])  # type: ignore[type-var]
        env = write(command)
        if isinstance(env.event, HandoffRequested):
            requested[command.session_key] = env.event.handoff_id
        first_event.setdefault(env.type, env)
        first_command.setdefault(type(command).__name__, command)

    key, docs, spike = "proj-42:refactor", "proj-42:docs", "proj-42:spike"
    run(
        RegisterSession(
            session_key=key,
            agent_from="claude-code",
            metadata={"repo": "acme/api", "branch": "main"},
            idempotency_key="reg-1",
        )
    )
    run(
        AppendContext(
            session_key=key,
            context_type="decision",
            content="Use msgspec for the wire format.",
            metadata={"taskId": "T-7"},
            agent="claude-code",
            expected_version=1,
        )
    )
    run(AppendContext(session_key=key, context_type="task", content="Port the codec", metadata={"taskId": "T-8"}))
    run(
        RequestHandoff(
            session_key=key,
            target_agent="cursor-agent",
            request_type="full_handoff",
            request_data={"reason": "end of my shift"},
            token_budget=2000,
            idempotency_key="req-1",
        )
    )
    run(AcceptHandoff(session_key=key, handoff_id="LAST", agent="cursor-agent"))
    run(
        CompleteHandoff(
            session_key=key, handoff_id="LAST", agent="cursor-agent", result={"summary": "refactor merged", "pr": 118}
        )
    )
    run(RegisterSession(session_key=docs, agent_from="codex"))
    run(AppendContext(session_key=docs, context_type="file", content="# API\n...", metadata={"path": "docs/api.md"}))
    run(RequestHandoff(session_key=docs, target_agent="gemini-cli"))
    run(RejectHandoff(session_key=docs, handoff_id="LAST", agent="gemini-cli", reason="not my area"))
    run(RequestHandoff(session_key=docs, target_agent="claude-code", request_type="collaboration"))
    run(CancelHandoff(session_key=docs, handoff_id="LAST", agent="codex", reason="done it myself"))
    run(RequestHandoff(session_key=docs, target_agent="cursor-agent"))
    run(ExpireHandoff(session_key=docs, handoff_id="LAST", reason="pending for 24h"))
    run(RequestHandoff(session_key=docs, target_agent="claude-code", token_budget=500))
    run(CloseSession(session_key=docs, agent="codex", reason="docs published"))
    run(RegisterSession(session_key=spike, agent_from="aider"))
    run(RequestHandoff(session_key=spike, target_agent="codex"))
    run(ExpireSession(session_key=spike, reason="idle for 30 days"))
    scan = "proj-42:scan"  # added after the others, so that their published records stay what they were
    run(RegisterSession(session_key=scan, agent_from="claude-code"))
    files = [("app/main.py", "python"), ("web/index.ts", "typescript")]
    run(
        AppendContextBatch(
            session_key=scan,
            entries=[
                ContextItem(context_type="file", content=f"File: {path}\nLanguage: {lang}", metadata={"filePath": path})
                for path, lang in files
            ],
            idempotency_key="scan-1",
        )
    )
    run(RegisterSession(session_key="gone", agent_from="aider"))
    run(EraseSession(session_key="gone", reason="the user asked to be forgotten", actor="operator"))
    return first_event, first_command


def _create(path: Path, data: bytes) -> bool:
    try:
        with path.open("xb") as f:  # never overwrite a published fixture
            f.write(data + b"\n")
    except FileExistsError:
        return False
    return True


def main(out: Path = HERE) -> int:
    """Write the missing fixtures under `out`; report the ones that already exist."""
    (out / "events").mkdir(parents=True, exist_ok=True)
    (out / "commands").mkdir(parents=True, exist_ok=True)
    files: dict[Path, bytes] = {}
    events, commands = history()
    for name, env in events.items():
        files[out / "events" / f"{name}.v{env.schema_version}.json"] = encode_envelope(env)
    for name, command in commands.items():
        files[out / "commands" / f"{name}.json"] = msgspec.json.format(msgspec.json.encode(command), indent=2)
    kept = 0
    for path, data in sorted(files.items()):
        if _create(path, data):
            print(f"wrote {path.relative_to(out)}")
        else:
            kept += 1
    print(f"{len(files) - kept} written, {kept} already published (left as they are)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*(Path(a) for a in sys.argv[1:])))
