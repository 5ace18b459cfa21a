"""Authentication on HTTP (CONTRACT §7) with the MCP SDK's own pieces, and the principal of the current call.

``--auth token`` checks bearer tokens against the data dir's `TokenStore`; ``--auth jwt`` checks
JWTs against an external issuer's JWKS. Either is a `TokenVerifier` behind the SDK's
`BearerAuthBackend`, `RequireAuthMiddleware` (401 + ``WWW-Authenticate: Bearer``) and
`AuthContextMiddleware`, which puts the token where `get_access_token()` finds it: the tool,
resource and prompt handlers read the caller's `Principal` from there, on the SDK's path and on
the fast path alike (both run in the request's context).

Verdicts are cheap on the hot path: a store token is one SHA-256 and a dict lookup (the store
re-reads its file only when it changed, checked at most once a second), and a JWT's verdict is
cached by the token's hash until the token expires, so its signature is checked once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread
import jwt
from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl, ConfigDict
from starlette.authentication import AuthCredentials
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.routing import Route
from starlette.types import ASGIApp

from handoff.kernel.principal import RESERVED_AGENT, ROLES, Principal, Role
from handoff.kernel.types import AgentId
from handoff.tokens import TokenLookup, TokenRecord, check_agent, hash_token

JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_JWT_CACHE_MAX = 10_000


class PrincipalToken(AccessToken):
    """An SDK access token that also carries the handoff principal it stands for."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    principal: Principal


def current_principal() -> Principal | None:
    """The principal of the call being served (None without authentication: ``--auth none`` or stdio)."""
    token = get_access_token()
    return token.principal if isinstance(token, PrincipalToken) else None


class StoreVerifier(TokenVerifier):
    """``--auth token``: tokens issued by ``handoff token create``."""

    def __init__(self, store: TokenLookup) -> None:
        self.store = store
        self._issued: dict[str, tuple[TokenRecord, PrincipalToken]] = {}  # by token id: built once per token

    async def verify_token(self, token: str) -> AccessToken | None:
        """The access token of a live store token, or None."""
        found = self.store.principal(token)
        if found is None:
            return None
        principal, record = found
        cached = self._issued.get(record.id)
        if cached is not None and cached[0] is record:
            return cached[1]
        expires = None if record.expires_at is None else int(_epoch(record.expires_at))
        access = PrincipalToken(
            token=record.sha256,  # the SDK needs a string here; the token itself is not kept
            client_id=record.id,  # an MCP session stays bound to the token that opened it
            subject=principal.agent,
            scopes=[principal.role],
            expires_at=expires,
            principal=principal,
        )
        self._issued[record.id] = (record, access)
        return access


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass(frozen=True)
class JwtSettings:
    """Where the issuer's keys are and what its tokens must say."""

    jwks_url: str
    issuer: str | None = None
    audience: str | None = None
    agent_claim: str = "sub"
    role_claim: str | None = None


class JwtVerifier(TokenVerifier):
    """``--auth jwt``: JWTs signed by an external issuer, checked against its JWKS with PyJWT."""

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self.keys = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300, timeout=10)
        self._verdicts: dict[str, PrincipalToken] = {}

    async def verify_token(self, token: str) -> AccessToken | None:
        """The access token of a valid JWT, or None; a valid verdict is reused until the JWT expires."""
        digest = hash_token(token)
        cached = self._verdicts.get(digest)
        if cached is not None and (cached.expires_at is None or cached.expires_at > time.time()):
            return cached
        access = await anyio.to_thread.run_sync(self._verify, token, digest)
        if access is not None:
            if len(self._verdicts) >= _JWT_CACHE_MAX:
                self._verdicts.clear()
            self._verdicts[digest] = access
        return access

    def _verify(self, token: str, digest: str) -> PrincipalToken | None:
        s = self.settings
        try:
            key = self.keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(JWT_ALGORITHMS),
                audience=s.audience,
                issuer=s.issuer,
                options={"require": ["exp"], "verify_aud": s.audience is not None},
            )
        except (jwt.PyJWTError, ValueError):
            return None
        agent = claims.get(s.agent_claim)
        role = claims.get(s.role_claim, "agent") if s.role_claim else "agent"
        if not isinstance(agent, str) or not isinstance(role, str) or role not in ROLES or agent == RESERVED_AGENT:
            return None
        try:
            check_agent(agent, role)
        except ValueError:
            return None
        principal = Principal(agent=AgentId(agent), role=_role(role))
        return PrincipalToken(
            token=digest,
            client_id=f"jwt:{agent}",
            subject=agent,
            scopes=[role],
            expires_at=int(claims["exp"]),
            claims={"iss": claims.get("iss")},
            principal=principal,
        )


def _role(role: str) -> Role:
    if role == "auditor":
        return "auditor"
    return "operator" if role == "operator" else "agent"


class CachedBearerBackend(BearerAuthBackend):
    """The SDK's bearer backend, reusing its verdict while the verifier vouches for the same token again.

    The verifier still runs on every request (so expiry and revocation apply as the store sees them);
    what is saved is the SDK's header scan and the credential objects it builds, once per token.
    """

    def __init__(self, token_verifier: TokenVerifier) -> None:
        super().__init__(token_verifier)
        self._verdicts: dict[bytes, tuple[AccessToken, tuple[AuthCredentials, AuthenticatedUser]]] = {}

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, AuthenticatedUser] | None:
        """The SDK's verdict for the request's bearer token, or None."""
        header = next((value for name, value in conn.scope["headers"] if name == b"authorization"), None)
        if header is None or header[:7].lower() != b"bearer ":
            return None
        access = await self.token_verifier.verify_token(header[7:].decode("latin-1"))
        if access is None:
            return None
        hit = self._verdicts.get(header)
        if hit is not None and hit[0] is access:
            expired = access.expires_at is not None and access.expires_at < time.time()
            return None if expired else hit[1]
        verdict: tuple[AuthCredentials, AuthenticatedUser] | None = await super().authenticate(conn)  # once per token
        if verdict is not None:
            if len(self._verdicts) >= _JWT_CACHE_MAX:
                self._verdicts.clear()
            self._verdicts[header] = (access, verdict)
        return verdict


@dataclass(frozen=True)
class Auth:
    """How ``/mcp`` is protected: the verifier, and where the protected-resource metadata points."""

    verifier: TokenVerifier
    authorization_servers: Sequence[str] = ()
    lifespan: AbstractAsyncContextManager[object] | None = None  # e.g. following the Kafka token topic

    def protect(self, app: ASGIApp, resource_url: str) -> ASGIApp:
        """`app` behind the SDK's bearer authentication: 401 + WWW-Authenticate without a valid token."""
        metadata_url = build_resource_metadata_url(AnyHttpUrl(resource_url))
        guarded = RequireAuthMiddleware(AuthContextMiddleware(app), [], resource_metadata_url=metadata_url)
        return AuthenticationMiddleware(guarded, backend=CachedBearerBackend(self.verifier))

    def routes(self, resource_url: str) -> list[Route]:
        """The RFC 9728 metadata, at ``/.well-known/oauth-protected-resource`` and at its path-suffixed form."""
        base = resource_url.rsplit("/mcp", 1)[0]
        metadata = ProtectedResourceMetadata(
            resource=AnyHttpUrl(resource_url),
            authorization_servers=[AnyHttpUrl(u) for u in (self.authorization_servers or (base,))],
            resource_name="handoff",
        )
        handler = cors_middleware(ProtectedResourceMetadataHandler(metadata).handle, ["GET", "OPTIONS"])
        paths = ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp")
        return [Route(path, endpoint=handler, methods=["GET", "OPTIONS"]) for path in paths]
