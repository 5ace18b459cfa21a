"""CONTRACT §7 over HTTP, as a user deploys it: `handoff serve --auth token` and `--auth jwt`.

Every principal acts only as itself, sees only what it may, and nothing a refused call tried is written.
The same suite runs against a server checking `handoff token create` tokens and one checking JWTs from
an issuer whose JWKS the test serves on loopback.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from integration.harness import Served, ok, refused, snapshot, start_server, subscribe_legacy, wait_for
from mcp.shared.exceptions import MCPError

from e2e.auth_support import AUDIENCE, ISSUER, Issuer, bearer_client, jwks_issuer, token_cli

pytestmark = pytest.mark.anyio

ROLES = {"alice": "agent", "bob": "agent", "carol": "agent", "mallory": "agent", "audra": "auditor", "otto": "operator"}


@dataclass
class AuthServer:
    mode: str
    served: Served
    data_dir: Path
    issuer: Issuer | None
    tokens: dict[str, str] = field(default_factory=dict)
    kafka: tuple[str, str] | None = None  # Kafka mode: (bootstrap, topic prefix) of the token topic

    def token_cli(self, *args: str) -> Any:
        return token_cli(self.data_dir, *args, kafka=self.kafka)

    def token(self, agent: str) -> str:
        if agent not in self.tokens:
            self.tokens[agent] = self.mint(agent, ROLES.get(agent, "agent"))
        return self.tokens[agent]

    def mint(self, agent: str, role: str = "agent", expires: str | None = None) -> str:
        if self.issuer is not None:
            ttl = 3600 if expires is None else int(expires)
            return self.issuer.mint(agent, role, ttl=ttl)
        extra = () if expires is None else ("--expires", expires)
        token = str(self.token_cli("create", "--agent", agent, "--role", role, *extra)["token"])
        if self.kafka is not None and expires is None:  # the adapter sees the new record after its next poll
            wait_for(lambda: post_status(self.served.mcp_url, token)[0] != 401, 5.0, "the adapter to see the token")
        return token

    def client(self, agent: str, mode: str = "auto") -> Any:
        return bearer_client(self.served.mcp_url, self.token(agent), mode)


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    root = tmp_path_factory.mktemp("auth-token")
    data = root / "data"
    served = start_server(data, root / "server.log", "--auth", "token")
    try:
        yield AuthServer("token", served, data, None)
    finally:
        served.stop()


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    root = tmp_path_factory.mktemp("auth-jwt")
    data = root / "data"
    with jwks_issuer() as issuer:
        jwt_args = ("--jwt-jwks-url", issuer.jwks_url, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)
        served = start_server(data, root / "server.log", "--auth", "jwt", *jwt_args, "--jwt-role-claim", "role")
        try:
            yield AuthServer("jwt", served, data, issuer)
        finally:
            served.stop()


@pytest.fixture(params=["token", "jwt"])
def server(request: pytest.FixtureRequest) -> AuthServer:
    """The suite runs once against each mode."""
    server: AuthServer = request.getfixturevalue(f"{request.param}_server")
    return server


def post_status(url: str, token: str | None) -> tuple[int, str]:
    """A raw initialize POST; its status and WWW-Authenticate header."""
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("www-authenticate", "")
    except urllib.error.HTTPError as error:
        error.close()
        return error.code, error.headers.get("www-authenticate", "")


async def alice_session(server: AuthServer, key: str, target: str = "bob", **extra: Any) -> str:
    """alice registers `key`, appends a note and requests a handoff to `target`; the handoff id."""
    async with server.client("alice") as alice:
        await ok(alice, "register_session", {"sessionKey": key})
        await ok(alice, "update_context", {"sessionKey": key, "contextType": "message", "content": "secret plan"})
        handoff = await ok(alice, "request_handoff", {"sessionKey": key, "targetAgent": target, **extra})
    return str(handoff["handoff"]["handoffId"])


async def alice_snapshot(server: AuthServer, key: str) -> tuple[int, list[dict[str, Any]]]:
    async with server.client("alice") as alice:
        return await snapshot(alice, key)


# Authentication: 401 for anything but a live token.


# Acting fields: a principal acts only as itself.


# Roles.


# Reads.


def raw_post(url: str, token: str, message: dict[str, Any], sid: str | None = None) -> tuple[int, str | None]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}",
    }
    if sid is not None:
        headers |= {"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status, response.headers.get("mcp-session-id")
    except urllib.error.HTTPError as error:
        error.close()
        return error.code, None


class AuthContract:
    """CONTRACT §7 over HTTP; a subclass per deployment supplies `token_server` and `jwt_server`."""

    def test_a_request_without_a_token_gets_401_with_www_authenticate(self, server: AuthServer) -> None:
        status, challenge = post_status(server.served.mcp_url, None)
        assert status == 401
        assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge

    def test_an_unknown_token_gets_401(self, server: AuthServer) -> None:
        assert post_status(server.served.mcp_url, "hnd_not-a-token-anyone-issued")[0] == 401

    def test_a_live_token_is_let_in(self, server: AuthServer) -> None:
        assert post_status(server.served.mcp_url, server.token("alice"))[0] == 200

    def test_an_expired_token_gets_401(self, server: AuthServer) -> None:
        if server.mode == "jwt":
            assert post_status(server.served.mcp_url, server.mint("alice", expires="-60"))[0] == 401
            return
        token = server.mint("alice", expires="1")
        # It may still be live for up to a second after it was issued; then it must be refused for good.
        wait_for(lambda: post_status(server.served.mcp_url, token)[0] == 401, 10, "the 1 s token to expire")

    def test_the_protected_resource_metadata_names_the_mcp_endpoint(self, server: AuthServer) -> None:
        with urllib.request.urlopen(server.served.url + "/.well-known/oauth-protected-resource", timeout=10) as r:
            metadata = json.loads(r.read())
        assert metadata["resource"] == server.served.mcp_url
        assert metadata["authorization_servers"]

    def test_a_revoked_token_stops_working_within_5_seconds_on_the_running_server(
        self, token_server: AuthServer
    ) -> None:
        server = token_server
        created = server.token_cli("create", "--agent", "carol")
        assert post_status(server.served.mcp_url, created["token"])[0] == 200
        server.token_cli("revoke", created["id"])
        revoked_at = time.monotonic()
        wait_for(lambda: post_status(server.served.mcp_url, created["token"])[0] == 401, 5.0, "the revocation to apply")
        assert time.monotonic() - revoked_at < 5.0
        listed = {t["id"]: t for t in server.token_cli("list")}
        assert listed[created["id"]]["revokedAt"] and "token" not in listed[created["id"]]

    def test_jwts_of_another_issuer_audience_or_key_get_401(self, jwt_server: AuthServer) -> None:
        server, url = jwt_server, jwt_server.served.mcp_url
        assert server.issuer is not None
        assert post_status(url, server.issuer.mint("alice", iss="https://elsewhere.test"))[0] == 401
        assert post_status(url, server.issuer.mint("alice", aud="another-service"))[0] == 401
        assert post_status(url, server.issuer.mint("system"))[0] == 401
        assert post_status(url, server.issuer.mint("alice", role="superuser"))[0] == 401
        with jwks_issuer() as stranger:  # a well-formed JWT signed by a key the issuer's JWKS does not hold
            assert post_status(url, stranger.mint("alice"))[0] == 401

    async def test_omitted_acting_fields_are_the_principal_and_the_actor_is_always_it(
        self, server: AuthServer, key: str
    ) -> None:
        hid = await alice_session(server, key)
        async with server.client("alice") as alice:
            entries = (await ok(alice, "get_context", {"sessionKey": key}))["entries"]
        assert [e["agent"] for e in entries] == ["alice", "alice", "alice"]  # registered, the note, the request
        async with server.client("bob") as bob:
            accepted = await ok(bob, "accept_handoff", {"handoffId": hid})
            assert accepted["handoff"]["acceptedBy"] == "bob"
            await ok(bob, "update_context", {"sessionKey": key, "contextType": "message", "content": "on it"})
            entries = (await ok(bob, "get_context", {"sessionKey": key}))["entries"]
        assert entries[-1]["agent"] == "bob"

    async def test_no_write_tool_lets_a_principal_act_as_another_agent(self, server: AuthServer, key: str) -> None:
        hid = await alice_session(server, key)
        before = await alice_snapshot(server, key)
        as_alice: list[tuple[str, dict[str, Any]]] = [
            ("register_session", {"sessionKey": key + "-2", "agentFrom": "alice"}),
            ("update_context", {"sessionKey": key, "contextType": "message", "content": "x", "agent": "alice"}),
            ("request_handoff", {"sessionKey": key, "targetAgent": "mallory", "agent": "alice"}),
            ("accept_handoff", {"handoffId": hid, "agent": "bob"}),
            ("reject_handoff", {"handoffId": hid, "agent": "bob", "reason": "no"}),
            ("complete_handoff", {"handoffId": hid, "agent": "bob"}),
            ("cancel_handoff", {"handoffId": hid, "agent": "alice"}),
            ("close_session", {"sessionKey": key, "agent": "alice"}),
        ]
        async with server.client("mallory") as mallory:
            for tool, args in as_alice:
                body = await refused(mallory, tool, args, "NOT_PERMITTED")
                assert "mallory" in body["error"]
            await refused(mallory, "get_session", {"sessionKey": key + "-2"}, "SESSION_NOT_FOUND")
        assert await alice_snapshot(server, key) == before

    async def test_nobody_acts_as_or_hands_off_to_system(self, server: AuthServer, key: str) -> None:
        async with server.client("alice") as alice:
            await refused(alice, "register_session", {"sessionKey": key, "agentFrom": "system"}, "NOT_PERMITTED")
            await ok(alice, "register_session", {"sessionKey": key})
            await refused(alice, "request_handoff", {"sessionKey": key, "targetAgent": "system"}, "NOT_PERMITTED")
            assert (await snapshot(alice, key))[0] == 1

    async def test_only_the_holder_requests_a_handoff(self, server: AuthServer, key: str) -> None:
        await alice_session(server, key, target="carol", requestType="collaboration")
        before = await alice_snapshot(server, key)
        async with server.client("mallory") as mallory:
            await refused(mallory, "request_handoff", {"sessionKey": key, "targetAgent": "mallory"}, "NOT_PERMITTED")
            await refused(
                mallory,
                "request_handoff",
                {"sessionKey": key, "targetAgent": "bob", "requestType": "full_handoff"},
                "NOT_PERMITTED",
            )
        assert await alice_snapshot(server, key) == before

    async def test_only_members_append_and_a_pending_target_is_not_one_yet(self, server: AuthServer, key: str) -> None:
        hid = await alice_session(server, key)
        before = await alice_snapshot(server, key)
        note = {"sessionKey": key, "contextType": "message", "content": "let me in"}
        async with server.client("mallory") as mallory:
            await refused(mallory, "update_context", note, "NOT_PERMITTED")
        async with server.client("bob") as bob:
            await refused(bob, "update_context", note, "NOT_PERMITTED")
            assert await alice_snapshot(server, key) == before
            await ok(bob, "accept_handoff", {"handoffId": hid})
            await ok(bob, "update_context", note)

    async def test_handoff_transitions_only_by_their_parties(self, server: AuthServer, key: str) -> None:
        hid = await alice_session(server, key)
        before = await alice_snapshot(server, key)
        async with server.client("mallory") as mallory:
            for tool, extra in (("accept_handoff", {}), ("reject_handoff", {"reason": "x"}), ("cancel_handoff", {})):
                await refused(mallory, tool, {"handoffId": hid, **extra}, "NOT_PERMITTED")
        async with server.client("bob") as bob:
            await refused(bob, "cancel_handoff", {"handoffId": hid}, "NOT_PERMITTED")
        assert await alice_snapshot(server, key) == before

    async def test_close_by_holder_or_registering_agent_or_operator_only(self, server: AuthServer, key: str) -> None:
        hid = await alice_session(server, key)
        async with server.client("bob") as bob:
            await ok(bob, "accept_handoff", {"handoffId": hid})  # bob holds it now; alice registered it
        async with server.client("mallory") as mallory:
            await refused(mallory, "close_session", {"sessionKey": key}, "NOT_PERMITTED")
        async with server.client("alice") as alice:
            await ok(alice, "close_session", {"sessionKey": key, "reason": "done"})
        hid2 = await alice_session(server, key + "-b")
        async with server.client("bob") as bob:
            await ok(bob, "accept_handoff", {"handoffId": hid2})
            await ok(bob, "close_session", {"sessionKey": key + "-b"})

    async def test_an_operator_closes_any_session_and_takes_part_in_none(self, server: AuthServer, key: str) -> None:
        hid = await alice_session(server, key)
        async with server.client("otto") as otto:
            await refused(otto, "register_session", {"sessionKey": key + "-otto"}, "NOT_PERMITTED")
            note = {"sessionKey": key, "contextType": "message", "content": "ops"}
            await refused(otto, "update_context", note, "NOT_PERMITTED")
            await refused(otto, "accept_handoff", {"handoffId": hid, "agent": "otto"}, "NOT_PERMITTED")
            assert (await ok(otto, "get_session", {"sessionKey": key}))["session"]["version"] == 3
            closed = await ok(otto, "close_session", {"sessionKey": key, "reason": "maintenance"})
            assert closed["session"]["status"] == "closed"

    async def test_an_auditor_reads_everything_and_writes_nothing(self, server: AuthServer, key: str) -> None:
        hid = await alice_session(server, key)
        before = await alice_snapshot(server, key)
        async with server.client("audra") as audra:
            assert await snapshot(audra, key) == before
            await ok(audra, "get_handoff", {"handoffId": hid})
            listed = (await ok(audra, "list_sessions", {"limit": 1000}))["sessions"]
            assert key in [s["sessionKey"] for s in listed]
            inbox = await audra.read_resource("handoff://agents/bob/inbox")
            assert hid in inbox.contents[0].text  # type: ignore[union-attr]
            writes: list[tuple[str, dict[str, Any]]] = [
                ("register_session", {"sessionKey": key + "-audit"}),
                ("update_context", {"sessionKey": key, "contextType": "message", "content": "x"}),
                ("request_handoff", {"sessionKey": key, "targetAgent": "carol"}),
                ("accept_handoff", {"handoffId": hid}),
                ("cancel_handoff", {"handoffId": hid}),
                ("close_session", {"sessionKey": key}),
            ]
            for tool, args in writes:
                await refused(audra, tool, args, "NOT_PERMITTED")
        assert await alice_snapshot(server, key) == before

    async def test_an_outsider_cannot_read_list_or_subscribe_to_a_session(self, server: AuthServer, key: str) -> None:
        hid = await alice_session(server, key)
        async with server.client("mallory") as mallory:
            await refused(mallory, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")
            await refused(mallory, "get_context", {"sessionKey": key}, "SESSION_NOT_FOUND")
            await refused(mallory, "get_handoff", {"handoffId": hid}, "HANDOFF_NOT_FOUND")
            sessions = (await ok(mallory, "list_sessions", {"limit": 1000}))["sessions"]
            assert key not in [s["sessionKey"] for s in sessions]
            sessions = (await ok(mallory, "list_sessions", {"agent": "alice", "limit": 1000}))["sessions"]
            assert key not in [s["sessionKey"] for s in sessions]
            handoffs = (await ok(mallory, "list_handoffs", {"sourceAgent": "alice", "limit": 1000}))["handoffs"]
            assert hid not in [h["handoffId"] for h in handoffs]
            for uri in (f"handoff://sessions/{key}", f"handoff://context/{key}", f"handoff://handoffs/{hid}"):
                with pytest.raises(MCPError):
                    await mallory.read_resource(uri)
            with pytest.raises(MCPError):
                async with mallory.listen(resource_subscriptions=[f"handoff://sessions/{key}"]):
                    pass
            sessions = (await mallory.read_resource("handoff://sessions")).contents[0].text  # type: ignore[union-attr]
            assert key not in sessions
            with pytest.raises(MCPError):
                await mallory.get_prompt("continue_from_handoff", {"handoffId": hid})

    async def test_a_legacy_session_cannot_subscribe_to_what_it_may_not_see(self, server: AuthServer, key: str) -> None:
        await alice_session(server, key)
        async with server.client("mallory", mode="legacy") as mallory:
            with pytest.raises(MCPError):
                await subscribe_legacy(mallory, f"handoff://sessions/{key}")

    async def test_the_pending_target_sees_its_handoff_and_package_only(self, server: AuthServer, key: str) -> None:
        hid = await alice_session(server, key)
        async with server.client("bob") as bob:
            got = await ok(bob, "get_handoff", {"handoffId": hid})
            assert [e["content"] for e in got["package"]["entries"] if e.get("content") == "secret plan"]
            await refused(bob, "get_session", {"sessionKey": key}, "SESSION_NOT_FOUND")
            await refused(bob, "get_context", {"sessionKey": key}, "SESSION_NOT_FOUND")
            inbox = await ok(bob, "list_handoffs", {"targetAgent": "bob", "status": "pending", "limit": 1000})
            assert hid in [h["handoffId"] for h in inbox["handoffs"]]
            prompt = await bob.get_prompt("continue_from_handoff", {"handoffId": hid})
            assert prompt.messages
            await ok(bob, "accept_handoff", {"handoffId": hid})
            await ok(bob, "get_context", {"sessionKey": key})

    async def test_an_agent_reads_only_its_own_inbox(self, server: AuthServer, key: str) -> None:
        hid = await alice_session(server, key)
        async with server.client("bob") as bob:
            own = await bob.read_resource("handoff://agents/bob/inbox")
            assert hid in own.contents[0].text  # type: ignore[union-attr]
        async with server.client("mallory") as mallory:
            with pytest.raises(MCPError):
                await mallory.read_resource("handoff://agents/bob/inbox")
            listed = await ok(mallory, "list_handoffs", {"targetAgent": "bob", "status": "pending", "limit": 1000})
            assert hid not in [h["handoffId"] for h in listed["handoffs"]]

    def test_a_session_opened_with_one_token_is_refused_to_another(self, server: AuthServer) -> None:
        url, alice = server.served.mcp_url, server.token("alice")
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
        status, sid = raw_post(url, alice, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
        assert status == 200 and sid
        assert raw_post(url, alice, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)[0] == 202
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        assert raw_post(url, alice, listing, sid)[0] == 200
        # The SDK binds a 2025-11-25 session to the credential that opened it; the fast path keeps that rule.
        assert raw_post(url, server.token("mallory"), listing, sid)[0] == 404

    async def test_many_principals_at_once_each_see_their_own(self, server: AuthServer, uid: str) -> None:
        async def one(agent: str) -> None:
            async with server.client(agent) as client:
                await ok(client, "register_session", {"sessionKey": f"own-{agent}-{uid}"})
                listed = (await ok(client, "list_sessions", {"limit": 1000}))["sessions"]
                keys = {s["sessionKey"] for s in listed if s["sessionKey"].endswith(uid)}
                assert keys == {f"own-{agent}-{uid}"}

        async with anyio.create_task_group() as group:
            for agent in ("alice", "bob", "carol"):
                group.start_soon(one, agent)


class TestAuthEmbedded(AuthContract):
    """Against `handoff serve --auth token|jwt` on a data dir."""

    async def test_an_agent_reads_only_its_own_analytics_and_an_auditor_anyones(
        self, server: AuthServer, key: str
    ) -> None:
        await alice_session(server, key)
        async with server.client("alice") as alice:
            own = (await ok(alice, "get_analytics", {}))["analytics"]
            assert own == (await ok(alice, "get_analytics", {"agent": "alice"}))["analytics"]
            await refused(alice, "get_analytics", {"agent": "bob"}, "NOT_PERMITTED")
        async with server.client("audra") as audra:
            await ok(audra, "get_analytics", {"agent": "bob"})
            await ok(audra, "get_analytics", {})
