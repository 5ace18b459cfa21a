"""The hardening options of ``serve`` (CONTRACT §7): timeouts, connection and session caps, the rate limit.

Each is a flag and a ``HANDOFF_*`` variable (the flag wins). Kept apart from the HTTP adapter so that
parsing them imports neither uvicorn nor the SDK.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Hardening:
    """How much one client may hold or ask of `serve` (0 for a cap or the rate: no limit)."""

    header_timeout: float = 10.0  # seconds from a request's first byte (or the connection) to its last header
    body_timeout: float = 30.0  # seconds from the last header to the body's last byte
    max_connections: int = 1000
    max_sessions: int = 100  # open MCP sessions per principal (per client address with --auth none)
    rate: float = 10000.0  # requests per second per principal, sustained (3x what this box serves one today)
    burst: float = 10000.0  # requests a principal may send at once before the rate applies


DEFAULTS: Final = Hardening()

# flag dest -> (environment variable, type, default)
_OPTIONS: dict[str, tuple[str, type, float]] = {
    "header_timeout": ("HANDOFF_HEADER_TIMEOUT", float, Hardening.header_timeout),
    "body_timeout": ("HANDOFF_BODY_TIMEOUT", float, Hardening.body_timeout),
    "max_connections": ("HANDOFF_MAX_CONNECTIONS", int, Hardening.max_connections),
    "max_sessions": ("HANDOFF_MAX_SESSIONS", int, Hardening.max_sessions),
    "rate_limit": ("HANDOFF_RATE_LIMIT", float, Hardening.rate),
    "rate_burst": ("HANDOFF_RATE_BURST", float, Hardening.burst),
}
_HELP = {
    "header_timeout": "seconds a client may take to send a request's headers",
    "body_timeout": "seconds a client may take to send a request's body",
    "max_connections": "open connections at most (fewer if the file-descriptor limit is lower)",
    "max_sessions": "open MCP sessions per principal (per client address with --auth none); the oldest is closed",
    "rate_limit": "requests per second per principal, beyond which HTTP 429 + Retry-After (0: no limit)",
    "rate_burst": "requests a principal may send at once before --rate-limit applies",
}


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    """Add the hardening options to ``handoff serve``."""
    for dest, (var, kind, default) in _OPTIONS.items():
        serve.add_argument(
            "--" + dest.replace("_", "-"),
            type=kind,
            metavar="N",
            help=f"{_HELP[dest]} (default: ${var} or {kind(default)})",
        )


def hardening(ns: argparse.Namespace, environ: Mapping[str, str]) -> Hardening:
    """The settings asked for: each flag, else its variable, else the default. ValueError names a bad one."""
    values: dict[str, float] = {}
    for dest, (var, kind, default) in _OPTIONS.items():
        given = getattr(ns, dest, None)
        if given is None:
            raw = environ.get(var)
            try:
                given = kind(raw) if raw else default
            except ValueError:
                raise ValueError(f"{var} must be a number, not {raw!r}") from None
        if given < 0 or given != given:
            raise ValueError(f"--{dest.replace('_', '-')} / {var} must be a number >= 0, not {given!r}")
        values[dest] = given
    return Hardening(
        header_timeout=values["header_timeout"],
        body_timeout=values["body_timeout"],
        max_connections=int(values["max_connections"]),
        max_sessions=int(values["max_sessions"]),
        rate=values["rate_limit"],
        burst=max(values["rate_burst"], 1.0),
    )
