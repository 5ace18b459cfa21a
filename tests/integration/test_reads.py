"""Reads through MCP: pagination, asOfVersion, resources and the continue_from_handoff prompt."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from integration.harness import new_handoff, new_session, ok

TEMPLATES = {
    "handoff://sessions/{sessionKey}",
    "handoff://context/{sessionKey}",
    "handoff://handoffs/{handoffId}",
    "handoff://agents/{agentId}/inbox",
}


def mentions(document: Any, value: str) -> bool:
    """Whether a JSON document holds `value` anywhere (as a value, at any depth)."""
    if isinstance(document, dict):
        return any(mentions(v, value) for v in document.values())
    if isinstance(document, list):
        return any(mentions(v, value) for v in document)
    return document == value


async def read_json(client: Client, uri: str) -> Any:
    result = await client.read_resource(uri)
    assert result.contents, f"{uri} has no contents"
    content = result.contents[0]
    assert getattr(content, "mime_type", None) in (None, "application/json"), content
    return json.loads(content.text)  # type: ignore[union-attr]


@pytest.mark.anyio
class ReadsContract:
    """The reads contract, for any backend behind `handoff serve`.

    A subclass (or its tier's conftest) supplies the fixtures `client` (an MCP client of the server
    under test), `key` (a session key no other test uses) and `uid` (a unique id).
    """

    # --- get_context pagination ---------------------------------------------------------------------

    async def test_get_context_pages_through_all_entries_with_next_after_sequence(
        self, client: Client, key: str
    ) -> None:
        await new_session(client, key, updates=24)
        seen: list[int] = []
        after = 0
        pages = 0
        while after is not None:
            page = await ok(client, "get_context", {"sessionKey": key, "afterSequence": after, "limit": 10})
            seen += [e["sequenceNumber"] for e in page["entries"]]
            after = page["nextAfterSequence"]
            pages += 1
            assert pages <= 4, "pagination does not end"
        assert seen == list(range(1, 26))
        assert pages == 3

    async def test_get_context_returns_entry_one_as_the_registration_system_entry(
        self, client: Client, key: str
    ) -> None:
        await new_session(client, key, agent="Agent Smith", updates=1)
        entries = (await ok(client, "get_context", {"sessionKey": key}))["entries"]
        assert entries[0]["sequenceNumber"] == 1
        assert entries[0]["contextType"] == "system"
        assert entries[0]["content"] == "Session registered by agent: Agent Smith"
        assert entries[1]["content"] == "note 0"

    async def test_get_context_defaults_to_100_entries(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=104)
        page = await ok(client, "get_context", {"sessionKey": key})
        assert [e["sequenceNumber"] for e in page["entries"]] == list(range(1, 101))
        assert page["nextAfterSequence"] == 100

    async def test_get_context_after_the_last_entry_is_empty_with_a_null_cursor(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=2)
        page = await ok(client, "get_context", {"sessionKey": key, "afterSequence": 3})
        assert page["entries"] == []
        assert page["nextAfterSequence"] is None

    async def test_get_context_ends_with_a_null_cursor_when_the_page_is_exactly_full(
        self, client: Client, key: str
    ) -> None:
        await new_session(client, key, updates=4)
        first = await ok(client, "get_context", {"sessionKey": key, "limit": 5})
        assert len(first["entries"]) == 5
        if first["nextAfterSequence"] is not None:  # a server may not know it is at the end yet
            rest = await ok(client, "get_context", {"sessionKey": key, "afterSequence": first["nextAfterSequence"]})
            assert rest["entries"] == [] and rest["nextAfterSequence"] is None

    async def test_get_context_carries_a_summary(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=1)
        await ok(client, "update_context", {"sessionKey": key, "contextType": "decision", "content": "ship it"})
        page = await ok(client, "get_context", {"sessionKey": key})
        assert page["summary"]

    # --- list_sessions / list_handoffs cursors -------------------------------------------------------------

    async def test_list_sessions_pages_newest_first_with_cursors(self, client: Client, uid: str) -> None:
        agent = f"pager-{uid}"
        keys = [f"ls-{uid}-{i}" for i in range(7)]
        for k in keys:
            await ok(client, "register_session", {"sessionKey": k, "agentFrom": agent})
        seen: list[str] = []
        cursor = None
        for _ in range(4):
            args: dict[str, Any] = {"agent": agent, "limit": 3}
            if cursor is not None:
                args["cursor"] = cursor
            page = await ok(client, "list_sessions", args)
            assert len(page["sessions"]) <= 3
            seen += [s["sessionKey"] for s in page["sessions"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert cursor is None
        assert seen == list(reversed(keys))

    async def test_list_sessions_filters_by_status(self, client: Client, uid: str) -> None:
        agent = f"status-{uid}"
        for i in range(3):
            await ok(client, "register_session", {"sessionKey": f"st-{uid}-{i}", "agentFrom": agent})
        await ok(client, "close_session", {"sessionKey": f"st-{uid}-1", "agent": agent})
        closed = await ok(client, "list_sessions", {"agent": agent, "status": "closed"})
        active = await ok(client, "list_sessions", {"agent": agent, "status": "active"})
        assert [s["sessionKey"] for s in closed["sessions"]] == [f"st-{uid}-1"]
        assert [s["sessionKey"] for s in active["sessions"]] == [f"st-{uid}-2", f"st-{uid}-0"]

    async def test_list_handoffs_pages_an_inbox_newest_first_with_cursors(self, client: Client, uid: str) -> None:
        target = f"inbox-{uid}"
        ids = []
        for i in range(5):
            ids.append((await new_handoff(client, f"lh-{uid}-{i}", source="agent-a", target=target))["handoffId"])
        seen: list[str] = []
        cursor = None
        for _ in range(4):
            args: dict[str, Any] = {"targetAgent": target, "status": "pending", "limit": 2}
            if cursor is not None:
                args["cursor"] = cursor
            page = await ok(client, "list_handoffs", args)
            seen += [h["handoffId"] for h in page["handoffs"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert cursor is None
        assert seen == list(reversed(ids))

    async def test_list_handoffs_filters_by_status_and_source(self, client: Client, uid: str) -> None:
        target = f"flt-{uid}"
        first = (await new_handoff(client, f"fh-{uid}-0", source=f"src-{uid}", target=target))["handoffId"]
        second = (await new_handoff(client, f"fh-{uid}-1", source=f"other-{uid}", target=target))["handoffId"]
        await ok(client, "accept_handoff", {"handoffId": first, "agent": target})
        pending = await ok(client, "list_handoffs", {"targetAgent": target, "status": "pending"})
        accepted = await ok(client, "list_handoffs", {"targetAgent": target, "status": "accepted"})
        by_source = await ok(client, "list_handoffs", {"sourceAgent": f"src-{uid}"})
        assert [h["handoffId"] for h in pending["handoffs"]] == [second]
        assert [h["handoffId"] for h in accepted["handoffs"]] == [first]
        assert [h["handoffId"] for h in by_source["handoffs"]] == [first]

    # --- asOfVersion ---------------------------------------------------------------------------------------

    async def test_reads_as_of_version_k_equal_the_live_reads_taken_after_k_events(
        self, client: Client, key: str
    ) -> None:
        writes: list[tuple[str, dict[str, Any]]] = [
            ("register_session", {"sessionKey": key, "agentFrom": "agent-a", "metadata": {"p": 1}}),
            ("update_context", {"sessionKey": key, "contextType": "message", "content": "hello"}),
            ("update_context", {"sessionKey": key, "contextType": "task", "content": "write tests"}),
            ("request_handoff", {"sessionKey": key, "targetAgent": "agent-b"}),
        ]
        live: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        last: dict[str, Any] = {}
        for tool, args in writes:
            last = await ok(client, tool, args)
            session = (await ok(client, "get_session", {"sessionKey": key}))["session"]
            entries = (await ok(client, "get_context", {"sessionKey": key}))["entries"]
            live.append((session, entries))
        await ok(client, "accept_handoff", {"handoffId": last["handoff"]["handoffId"], "agent": "agent-b"})
        await ok(
            client,
            "update_context",
            {"sessionKey": key, "contextType": "message", "content": "later", "agent": "agent-b"},
        )
        for k, (session, entries) in enumerate(live, start=1):
            as_of = (await ok(client, "get_session", {"sessionKey": key, "asOfVersion": k}))["session"]
            assert as_of == session, f"get_session asOfVersion={k}"
            page = await ok(client, "get_context", {"sessionKey": key, "asOfVersion": k})
            assert page["entries"] == entries, f"get_context asOfVersion={k}"
            assert page["nextAfterSequence"] is None

    async def test_get_context_as_of_version_pages_within_that_version(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=9)  # versions 1..10, entries 1..10
        page = await ok(client, "get_context", {"sessionKey": key, "asOfVersion": 6, "afterSequence": 2, "limit": 3})
        assert [e["sequenceNumber"] for e in page["entries"]] == [3, 4, 5]
        rest = await ok(
            client, "get_context", {"sessionKey": key, "asOfVersion": 6, "afterSequence": page["nextAfterSequence"]}
        )
        assert [e["sequenceNumber"] for e in rest["entries"]] == [6]
        assert rest["nextAfterSequence"] is None

    async def test_as_of_a_version_beyond_the_session_is_refused(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=1)
        result = await client.call_tool("get_session", {"sessionKey": key, "asOfVersion": 99})
        assert result.is_error
        assert result.structured_content and result.structured_content["code"] in {"INVALID_ARGUMENT", "LIMIT_EXCEEDED"}

    # --- resources -----------------------------------------------------------------------------------------

    async def test_the_four_resource_templates_are_declared(self, client: Client) -> None:
        templates = await client.list_resource_templates()
        assert {t.uri_template for t in templates.resource_templates} >= TEMPLATES

    async def test_the_session_list_resource_is_declared(self, client: Client) -> None:
        resources = await client.list_resources()
        assert "handoff://sessions" in {str(r.uri) for r in resources.resources}

    async def test_the_session_list_resource_shows_the_newest_session_first(self, client: Client, uid: str) -> None:
        older, newer = f"old-{uid}", f"new-{uid}"
        await new_session(client, older)
        await new_session(client, newer)
        text = json.dumps(await read_json(client, "handoff://sessions"))
        assert newer in text and older in text
        assert text.index(newer) < text.index(older)

    async def test_the_session_resource_reads_a_url_encoded_key(self, client: Client, uid: str) -> None:
        key = f"proj:{uid}.v1"
        await new_session(client, key, updates=1)
        document = await read_json(client, "handoff://sessions/" + quote(key, safe=""))
        assert mentions(document, key)
        assert mentions(document, "agent-a")

    async def test_the_context_resource_holds_session_entries_and_summary(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=2)
        document = await read_json(client, f"handoff://context/{key}")
        assert {"session", "entries", "summary"} <= set(document), document.keys()
        assert [e["sequenceNumber"] for e in document["entries"]] == [1, 2, 3]
        assert mentions(document["session"], key)

    async def test_the_handoff_resource_shows_the_handoff(self, client: Client, key: str) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        document = await read_json(client, f"handoff://handoffs/{hid}")
        assert mentions(document, hid)
        assert mentions(document, "pending")

    async def test_the_inbox_resource_lists_pending_handoffs_for_an_agent_with_a_spaced_name(
        self, client: Client, uid: str
    ) -> None:
        agent = f"Reviewer {uid}"
        hid = (await new_handoff(client, f"ib-{uid}", target=agent))["handoffId"]
        document = await read_json(client, f"handoff://agents/{quote(agent, safe='')}/inbox")
        assert mentions(document, hid)

    async def test_reading_a_missing_session_resource_is_an_error(self, client: Client, uid: str) -> None:
        with pytest.raises(MCPError):
            await client.read_resource(f"handoff://sessions/missing-{uid}")

    # --- prompt --------------------------------------------------------------------------------------------

    async def test_the_continue_from_handoff_prompt_is_declared_with_a_required_handoff_id(
        self, client: Client
    ) -> None:
        prompts = (await client.list_prompts()).prompts
        prompt = next(p for p in prompts if p.name == "continue_from_handoff")
        assert [(a.name, a.required) for a in prompt.arguments or []] == [("handoffId", True)]

    async def test_the_continue_from_handoff_prompt_gives_the_receiver_the_context(
        self, client: Client, key: str
    ) -> None:
        await new_session(client, key, agent="agent-a")
        await ok(client, "update_context", {"sessionKey": key, "contextType": "decision", "content": "Use Postgres 16"})
        await ok(
            client, "update_context", {"sessionKey": key, "contextType": "task", "content": "Migrate the users table"}
        )
        hid = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "agent-b"}))["handoff"][
            "handoffId"
        ]
        prompt = await client.get_prompt("continue_from_handoff", {"handoffId": hid})
        assert prompt.messages
        text = "\n".join(getattr(m.content, "text", "") for m in prompt.messages)
        assert key in text
        assert "Use Postgres 16" in text
        assert "Migrate the users table" in text

    async def test_the_continue_from_handoff_prompt_for_an_unknown_handoff_is_an_error(
        self, client: Client, uid: str
    ) -> None:
        with pytest.raises(MCPError):
            await client.get_prompt("continue_from_handoff", {"handoffId": f"nope-{uid}"})

    # --- recorded packages ---------------------------------------------------------------------------------

    async def test_a_handoff_package_stays_exactly_as_recorded_after_later_writes(
        self, client: Client, key: str
    ) -> None:
        hid = (await new_handoff(client, key))["handoffId"]
        recorded = await ok(client, "get_handoff", {"handoffId": hid})
        assert set(recorded["package"]) >= {
            "summary",
            "keyPoints",
            "participants",
            "entries",
            "fromSequence",
            "toSequence",
            "estimatedTokens",
            "sha256",
        }
        for i in range(3):
            await ok(client, "update_context", {"sessionKey": key, "contextType": "decision", "content": f"later {i}"})
        await ok(client, "accept_handoff", {"handoffId": hid, "agent": "agent-b"})
        again = await ok(client, "get_handoff", {"handoffId": hid})
        assert again["package"] == recorded["package"]

    async def test_a_request_reports_its_package_range_budget_and_hash(self, client: Client, key: str) -> None:
        await new_session(client, key, updates=3)
        handoff = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "agent-b"}))["handoff"]
        package = handoff["package"]
        assert isinstance(handoff["contextSummary"], str)
        assert isinstance(handoff["contextEntries"], int)
        assert 1 <= package["fromSequence"] <= package["toSequence"] <= 4
        assert package["tokenBudget"] == 4000
        assert len(package["sha256"]) == 64 and int(package["sha256"], 16) >= 0
        full = await ok(client, "get_handoff", {"handoffId": handoff["handoffId"]})
        assert full["package"]["sha256"] == package["sha256"]
        numbers = [e["sequenceNumber"] for e in full["package"]["entries"]]
        assert numbers == list(range(package["fromSequence"], package["toSequence"] + 1))

    async def test_a_small_token_budget_keeps_the_newest_entries_that_fit(self, client: Client, key: str) -> None:
        await new_session(client, key)
        for i in range(30):
            words = " ".join(f"word{i}_{j}" for j in range(40))
            await ok(client, "update_context", {"sessionKey": key, "contextType": "message", "content": words})
        small = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "b", "tokenBudget": 500}))[
            "handoff"
        ]
        large = (await ok(client, "request_handoff", {"sessionKey": key, "targetAgent": "c", "tokenBudget": 200000}))[
            "handoff"
        ]
        assert small["package"]["estimatedTokens"] <= 500
        assert small["package"]["toSequence"] == 31
        assert small["package"]["fromSequence"] > large["package"]["fromSequence"]


class TestReadsEmbedded(ReadsContract):
    """`handoff serve` in embedded mode, fast path on (`server`, `client`: tests/integration/conftest.py)."""
