"""Who may do what (CONTRACT §7): the pure rules `decide` applies to writes and the adapters apply to reads.

A command carries the `Principal` it was authenticated as (None with ``--auth none``, where the
acting-agent fields are taken as given). With a principal:

* its acting fields (``agentFrom``, ``agent``) must name the principal's own agent;
* an ``auditor`` writes nothing, an ``operator`` only closes sessions (it never appends or takes
  part in a handoff);
* ``request_handoff`` only by the holder, ``update_context`` only by a member, ``close_session`` by
  the holder, the registering agent or an operator.

A session's **members** are its registering agent, its holder and every agent that accepted one of
its handoffs (a collaboration target once it accepted). The target of a handoff that is still
pending is not a member: it sees that handoff and its package, nothing else of the session.
Nobody, in any mode, may act as or hand off to ``system``.
"""

from __future__ import annotations

from collections.abc import Iterable

from handoff.kernel.commands import (
    AcceptHandoff,
    AppendContext,
    AppendContextBatch,
    CancelHandoff,
    CloseSession,
    Command,
    CompleteHandoff,
    EraseSession,
    ExpireHandoff,
    ExpireSession,
    RegisterSession,
    RejectHandoff,
    RequestHandoff,
)
from handoff.kernel.errors import NotPermitted
from handoff.kernel.principal import RESERVED_AGENT, Principal
from handoff.kernel.state import SessionState
from handoff.kernel.types import OPEN_HANDOFF_STATUSES

READ_ALL_ROLES = frozenset({"auditor", "operator"})


def acting_agent(command: Command) -> str | None:
    """The agent the command says it acts as, if it names one."""
    match command:
        case RegisterSession():
            return command.agent_from
        case AppendContext() | AppendContextBatch() | RequestHandoff():
            return command.agent
        case AcceptHandoff() | CompleteHandoff() | RejectHandoff() | CancelHandoff() | CloseSession():
            return command.agent
        case ExpireHandoff() | ExpireSession() | EraseSession():
            return None


def check_principal(command: Command) -> None:
    """The rules that need no state: reserved names, roles, and the acting fields against the principal."""
    acting = acting_agent(command)
    if acting == RESERVED_AGENT:
        field = "agentFrom" if isinstance(command, RegisterSession) else "agent"
        raise NotPermitted(f"{RESERVED_AGENT!r} is the engine's own actor; no agent may use it", field=field)
    if isinstance(command, RequestHandoff) and command.target_agent == RESERVED_AGENT:
        raise NotPermitted(f"{RESERVED_AGENT!r} is the engine's own actor; no agent may use it", field="targetAgent")
    principal = command.principal
    if principal is None:
        return
    if principal.agent == RESERVED_AGENT or isinstance(command, ExpireHandoff | ExpireSession):
        raise NotPermitted("only the engine itself expires sessions and handoffs")
    if isinstance(command, EraseSession):
        if principal.role != "operator":
            raise NotPermitted(f"{principal.agent!r} is not an operator: only operators erase sessions")
        return
    if principal.role == "auditor":
        raise NotPermitted(f"{principal.agent!r} is an auditor: it reads everything and writes nothing")
    if principal.role == "operator" and not isinstance(command, CloseSession):
        raise NotPermitted(f"{principal.agent!r} is an operator: it closes sessions, it takes no part in them")
    if acting is not None and acting != principal.agent:
        raise NotPermitted(
            f"you are authenticated as {principal.agent!r} and may not act as {acting!r}",
            field="agentFrom" if isinstance(command, RegisterSession) else "agent",
        )


def members(state: SessionState) -> frozenset[str]:
    """The registering agent, the holder, and every agent that accepted one of the session's handoffs."""
    accepted = (h.accepted_by for h in state.handoffs.values() if h.accepted_by)
    return frozenset((state.agent_from, state.holder, *accepted))


def check_session_rules(state: SessionState, command: Command) -> None:
    """The rules that need the session: holder-only handoff requests, member-only appends, who closes."""
    principal = command.principal
    key = state.session_key
    match command:
        case RequestHandoff():
            requester = principal.agent if principal is not None else command.agent
            if requester is not None and requester != state.holder:
                raise NotPermitted(
                    f"only {state.holder!r}, who holds session {key!r}, may request a handoff of it", sessionKey=key
                )
        case AppendContext() | AppendContextBatch() if principal is not None:
            if principal.agent not in members(state):
                raise NotPermitted(f"{principal.agent!r} takes no part in session {key!r}", sessionKey=key)
        case CloseSession() if principal is not None:
            if principal.role != "operator" and principal.agent not in (state.holder, state.agent_from):
                raise NotPermitted(
                    f"only the holder, the registering agent or an operator may close session {key!r}", sessionKey=key
                )
        case _:
            pass


def may_see_session(principal: Principal | None, agent_from: str, holder: str, accepted: Iterable[str]) -> bool:
    """Whether the principal may read a session (its view, context, resources and subscriptions)."""
    if principal is None or principal.role in READ_ALL_ROLES:
        return True
    agent = principal.agent
    return agent in (agent_from, holder) or agent in accepted


def may_see_handoff(principal: Principal | None, target: str, status: str, session_visible: bool) -> bool:
    """Whether the principal may read a handoff: whoever sees its session, or its target while it is open."""
    if session_visible:
        return True
    assert principal is not None  # no principal sees every session
    return principal.agent == target and status in OPEN_HANDOFF_STATUSES


def may_read_inbox(principal: Principal | None, agent: str) -> bool:
    """An agent's inbox is its own; auditors and operators read any."""
    return principal is None or principal.role in READ_ALL_ROLES or principal.agent == agent
