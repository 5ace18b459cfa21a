"""The ``serve`` options of CONTRACT §7 (``--auth``, ``--allowed-host``, ``--jwt-*``) and their start-up checks.

Kept apart from `handoff.mcp.auth` so that parsing them imports neither the SDK nor PyJWT.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Mapping

AUTH_MODES = ("none", "token", "jwt")


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    """Add the identity-and-access options to ``handoff serve``."""
    serve.add_argument(
        "--auth",
        choices=AUTH_MODES,
        help="none (loopback only), token (handoff token create) or jwt (default: $HANDOFF_AUTH or none)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a Host header to accept besides loopback (repeatable; e.g. a reverse proxy's public name)",
    )
    serve.add_argument("--jwt-jwks-url", metavar="URL", help="the issuer's JWKS (required with --auth jwt)")
    serve.add_argument("--jwt-issuer", metavar="ISS", help="the iss claim every JWT must carry")
    serve.add_argument("--jwt-audience", metavar="AUD", help="the aud claim every JWT must carry")
    serve.add_argument("--jwt-agent-claim", default="sub", metavar="CLAIM", help="the agent id's claim (default: sub)")
    serve.add_argument("--jwt-role-claim", metavar="CLAIM", help="the role's claim (default: every JWT is an agent)")


def auth_mode(ns: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The auth mode asked for: the flag, else ``HANDOFF_AUTH``, else none."""
    mode = ns.auth or environ.get("HANDOFF_AUTH") or "none"
    if mode not in AUTH_MODES:
        raise ValueError(f"HANDOFF_AUTH must be one of {', '.join(AUTH_MODES)}, not {mode!r}")
    return mode


def is_loopback(host: str) -> bool:
    """Whether every address `host` stands for is loopback (a wildcard is not)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refusal(mode: str, ns: argparse.Namespace) -> str | None:
    """Why `serve` must not start with these options, or None."""
    if mode == "none" and ns.transport == "http" and not is_loopback(ns.host):
        return (
            f"refusing to serve without authentication on {ns.host}, which is not a loopback address: "
            "pass --auth token (see `handoff token create`) or --auth jwt, or listen on 127.0.0.1"
        )
    if mode == "jwt" and not ns.jwt_jwks_url:
        return "--auth jwt needs --jwt-jwks-url (and usually --jwt-issuer and --jwt-audience)"
    return None
