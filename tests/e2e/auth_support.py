"""What the auth suites share: a JWKS served on loopback, token minting for both modes, bearer clients."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from integration.harness import child_env, handoff_command
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ISSUER = "https://issuer.test"
AUDIENCE = "handoff-test"
KID = "test-key-1"


@dataclass
class Issuer:
    """An external JWT issuer: an RSA key and its JWKS on a loopback URL."""

    key: rsa.RSAPrivateKey
    jwks_url: str

    def mint(self, agent: str, role: str = "agent", *, ttl: float = 3600, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": agent, "role": role, "iat": now, "exp": now + int(ttl)}
        return jwt.encode({**body, **claims}, self.key, algorithm="RS256", headers={"kid": KID})


@contextmanager
def jwks_issuer() -> Iterator[Issuer]:
    """Serve the JWKS of a fresh RSA key at http://127.0.0.1:PORT/jwks.json until the block ends."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/jwks.json" else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Issuer(key, f"http://127.0.0.1:{server.server_address[1]}/jwks.json")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def token_cli(data_dir: Path, *args: str, kafka: tuple[str, str] | None = None) -> Any:
    """Run `handoff token ... --json --data-dir DIR` (or ``--kafka``, given (bootstrap, topic prefix)); its JSON."""
    where = ["--data-dir", str(data_dir)] if kafka is None else ["--kafka", kafka[0]]
    env = child_env() if kafka is None else {**child_env(), "HANDOFF_KAFKA_TOPIC_PREFIX": kafka[1]}
    done = subprocess.run(
        [*handoff_command(), "token", *args, "--json", *where],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


@asynccontextmanager
async def bearer_client(url: str, token: str | None, mode: str = "auto") -> AsyncIterator[Client]:
    """An official MCP client that sends `Authorization: Bearer <token>` on every request."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    http = create_mcp_http_client(headers=headers)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
        yield client
