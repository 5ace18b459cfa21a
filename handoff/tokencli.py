"""``handoff token create|list|revoke``: issue, list and revoke the bearer tokens of a data dir."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, cast

from handoff.config import Env
from handoff.kernel.principal import ROLES, Role
from handoff.tokens import TokenError, TokenRecord, data_dir_store, parse_duration
from streams.security import KafkaSecurity
from streams.security import add_options as kafka_security_options

EPILOG = """examples:
  handoff token create --agent alice                      # prints the token once; keep it
  handoff token create --agent audit --role auditor --expires 30d --json
  handoff token list --json
  handoff token revoke tok_0123456789abcdef               # every running serve refuses it within 5 s
"""


def register(commands: Any) -> None:
    """Add ``token`` and its subcommands to the CLI's subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    token = commands.add_parser(
        "token", help="issue, list and revoke bearer tokens", epilog=EPILOG, formatter_class=raw
    )
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="issue a token (printed once; only its hash is kept)")
    create.add_argument("--agent", required=True, help="the agent id the token acts as")
    create.add_argument("--role", choices=ROLES, default="agent", help="default: agent")
    create.add_argument("--expires", metavar="DURATION", help="e.g. 3600, 90m, 12h, 30d (default: never)")
    listing = actions.add_parser("list", help="every token issued, without the tokens themselves")
    revoke = actions.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    for sub in (create, listing, revoke):
        sub.add_argument("--data-dir", type=Path, help="default: $HANDOFF_DATA_DIR or the user data dir + /handoff")
        sub.add_argument("--kafka", metavar="BOOTSTRAP", help="Kafka mode: the installation's token topic")
        kafka_security_options(sub)
        sub.add_argument("--json", action="store_true", help="machine-readable output")


async def _run_kafka(ns: argparse.Namespace, bootstrap: str) -> int:
    from streams.tokens import KafkaTokenStore  # only Kafka mode pays for aiokafka

    try:
        security = KafkaSecurity.from_options(ns, os.environ)
    except ValueError as exc:
        print(f"handoff token: {exc}", file=sys.stderr)
        return 2
    prefix = os.environ.get("HANDOFF_KAFKA_TOPIC_PREFIX") or "handoff"
    async with KafkaTokenStore(bootstrap, prefix, security=security) as store:
        try:
            if ns.token_command == "create":
                ttl = None if ns.expires is None else parse_duration(ns.expires)
                _print_created(ns, *await store.create(ns.agent, cast(Role, ns.role), ttl))
            elif ns.token_command == "list":
                _print_list(ns, store.records())
            else:
                _print_revoked(ns, await store.revoke(ns.id))
        except TokenError as exc:
            print(f"handoff token: {exc}", file=sys.stderr)
            return 2
    return 0


def _print_created(ns: argparse.Namespace, record: TokenRecord, token: str) -> None:
    body = {"id": record.id, "token": token, "agent": record.agent, "role": record.role}
    print(json.dumps({**body, "expiresAt": record.expires_at}) if ns.json else token)
    if not ns.json:
        print(f"{_line(record)}  (the token is shown only now)", file=sys.stderr)


def _print_list(ns: argparse.Namespace, records: list[TokenRecord]) -> None:
    print(json.dumps([r.public() for r in records]) if ns.json else "\n".join(_line(r) for r in records))


def _print_revoked(ns: argparse.Namespace, record: TokenRecord) -> None:
    print(json.dumps(record.public()) if ns.json else f"revoked {record.id} ({record.agent})")


def _line(record: TokenRecord) -> str:
    state = "revoked" if record.revoked_at else f"expires {record.expires_at}" if record.expires_at else "no expiry"
    return f"{record.id}  {record.agent}  {record.role}  {state}"


def run(ns: argparse.Namespace, env: Env) -> int:
    """Run one token subcommand; 0 on success, 2 on a usage error."""
    bootstrap = ns.kafka or env.kafka_bootstrap
    if bootstrap:
        return asyncio.run(_run_kafka(ns, bootstrap))
    store = data_dir_store(ns.data_dir or env.data_dir)
    try:
        if ns.token_command == "create":
            ttl = None if ns.expires is None else parse_duration(ns.expires)
            _print_created(ns, *store.create(ns.agent, cast(Role, ns.role), ttl))
        elif ns.token_command == "list":
            _print_list(ns, store.records())
        else:
            _print_revoked(ns, store.revoke(ns.id))
    except TokenError as exc:
        print(f"handoff token: {exc}", file=sys.stderr)
        return 2
    return 0
