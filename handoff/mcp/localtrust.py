"""Local trust: only the data dir's owner may use the shared engine, and nobody else can pose as it.

The data dir is private (0700, files 0600) and holds ``engine.secret``, 256 random bits. The engine that
`handoff stdio` starts is served with ``--local-secret``: every request must carry the secret in the
``x-handoff-secret`` header (401 otherwise), except ``GET /local-proof?challenge=C``, which answers
``HMAC-SHA256(secret, C)``. A relay sends a fresh challenge and checks the proof *before* it sends
anything, so an impostor that took the advertised port after a crash learns nothing and is never used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

if TYPE_CHECKING:  # `handoff stdio` imports this module and must stay light: no web framework at run time
    from starlette.types import ASGIApp, Receive, Scope, Send

SECRET_HEADER = "x-handoff-secret"
PROOF_PATH = "/local-proof"


def secure_data_dir(root: Path) -> None:
    """Create the data dir private (0700), and make an existing one and every file in it private too.

    Data dirs made before this rule were 0755 with 0644 files: readable by every local account.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o700)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def read_secret(path: Path) -> str:
    """The data dir's secret, created (0600, exclusively) on first use."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return path.read_text().strip()


def proof(secret: str, challenge: str) -> str:
    """What only a holder of `secret` can answer to `challenge`."""
    return hmac.new(secret.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def new_challenge() -> str:
    """A fresh challenge, never used before."""
    return secrets.token_hex(16)


def proven(secret: str, challenge: str, answer: object) -> bool:
    """Whether `answer` proves knowledge of `secret` for `challenge`."""
    return isinstance(answer, str) and hmac.compare_digest(answer, proof(secret, challenge))


def guard(app: ASGIApp, secret: str) -> ASGIApp:
    """`app`, answering only requests that carry the secret (and the proof route, which needs none)."""
    expected = secret.encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scope["path"] == PROOF_PATH:
            challenge = parse_qs(scope.get("query_string", b"").decode()).get("challenge", [""])[0]
            body: dict[str, object] = {"proof": proof(secret, challenge), "pid": os.getpid()}
            if not challenge:
                body = {"error": "no challenge"}
            await _answer(send, 200 if challenge else 400, body)
            return
        presented = next((v for k, v in scope["headers"] if k == SECRET_HEADER.encode()), b"")
        if not hmac.compare_digest(presented, expected):
            await _answer(send, 401, {"error": "this engine serves only its data dir's owner (handoff stdio)"})
            return
        await app(scope, receive, send)

    return guarded


async def _answer(send: Send, status: int, body: dict[str, object]) -> None:
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
