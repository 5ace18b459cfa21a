"""Kafka security (CONTRACT §7): every Kafka client over SASL_SSL + SCRAM-SHA-256, and clear refusals.

The worker and `serve --kafka` of `secured_mcp` take their settings from HANDOFF_KAFKA_*; the CLI
commands here take them as flags (the password from a file). Wrong credentials stop a worker and
`serve --kafka` at start-up with exit status 1 and a message that names the authentication failure.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from integration.harness import child_env, handoff_command, http_client, new_session

from kafka.mcp import KafkaMcp
from kafka.secure import SecureBroker, make_certificates
from streams.security import KafkaSecurity
from streams.tokens import KafkaTokenStore

pytestmark = pytest.mark.anyio

AUTH_FAILED = "Kafka refused this client's credentials (SASL authentication failed)"


def _flags(secured: SecureBroker, password_file: Path) -> list[str]:
    password_file.write_text(secured.password + "\n")
    return [
        "--kafka", secured.bootstrap, "--kafka-security-protocol", "SASL_SSL",
        "--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", secured.username,
        "--kafka-sasl-password-file", str(password_file), "--kafka-ssl-cafile", str(secured.cafile),
    ]  # fmt: skip


def _handoff(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in child_env().items() if not k.startswith("HANDOFF_KAFKA_")}
    return subprocess.run(
        [*handoff_command(), *args], env={**environ, **(env or {})}, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=timeout,
    )  # fmt: skip


async def test_the_cli_exports_and_verifies_over_sasl_ssl_with_the_flags(
    secured_mcp: KafkaMcp, secured: SecureBroker, tmp_path: Path
) -> None:
    key = f"sec-{uuid.uuid4().hex[:8]}"
    async with http_client(secured_mcp.served.mcp_url) as client:
        await new_session(client, key, updates=2)
    flags = [*_flags(secured, tmp_path / "password"), "--topic-prefix", secured_mcp.topics.prefix]
    exported = _handoff("export", *flags, "--session", key)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    events = [e for e in lines if e["type"] != "handoff.datakey"]  # the session's data key travels with it
    assert len(events) == 3 and {e["subject"] for e in lines} == {key}, exported.stdout[:2000]
    assert [e["subject"] for e in lines if e["type"] == "handoff.datakey"] == [key]
    verified = _handoff("verify", *flags, "--session", key, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


async def test_token_commands_work_over_sasl_ssl_and_a_store_with_the_settings_sees_the_token(
    secured: SecureBroker, tmp_path: Path
) -> None:
    prefix = f"tok{uuid.uuid4().hex[:8]}"
    flags = _flags(secured, tmp_path / "password")
    env = {"HANDOFF_KAFKA_TOPIC_PREFIX": prefix}
    created = _handoff("token", "create", "--agent", "alice", "--json", *flags, env=env)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    security = KafkaSecurity.from_options(None, secured.env())
    async with KafkaTokenStore(secured.bootstrap, prefix, security=security) as store:
        found = store.principal(token)
    assert found is not None and found[0].agent == "alice"


def test_a_worker_with_a_wrong_password_exits_1_naming_the_authentication_failure(
    secured: SecureBroker, tmp_path: Path
) -> None:
    done = _handoff(
        "worker", "--kafka", secured.bootstrap, "--data-dir", str(tmp_path / "w"), "--topic-prefix", "refused",
        env={**secured.env(password="not-the-password"), "HANDOFF_KAFKA_CONNECT_TIMEOUT": "30"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert AUTH_FAILED in done.stderr and "SaslAuthenticationFailed" in done.stderr, done.stderr


def test_serve_with_a_wrong_user_exits_1_naming_the_authentication_failure(
    secured: SecureBroker, tmp_path: Path
) -> None:
    env = {**secured.env(), "HANDOFF_KAFKA_SASL_USERNAME": "nobody", "HANDOFF_KAFKA_TOPIC_PREFIX": "refused"}
    done = _handoff(
        "serve", "--kafka", secured.bootstrap, "--port", "0", "--data-dir", str(tmp_path / "s"), env=env
    )
    assert done.returncode == 1, done.stderr
    assert AUTH_FAILED in done.stderr, done.stderr


def test_a_worker_whose_settings_do_not_fit_together_exits_2_before_connecting(tmp_path: Path) -> None:
    done = _handoff(
        "worker", "--kafka", "127.0.0.1:9", "--data-dir", str(tmp_path / "w"), "--kafka-security-protocol", "SASL_SSL",
    )  # fmt: skip
    assert done.returncode == 2
    assert "needs a username and a password" in done.stderr, done.stderr


def test_a_worker_that_does_not_trust_the_brokers_certificate_exits_1_naming_tls(
    secured: SecureBroker, tmp_path: Path
) -> None:
    other_ca, _ = make_certificates(tmp_path / "other", "unused-password")
    done = _handoff(
        "worker", "--kafka", secured.bootstrap, "--data-dir", str(tmp_path / "w"), "--topic-prefix", "refused",
        env={**secured.env(), "HANDOFF_KAFKA_SSL_CAFILE": str(other_ca), "HANDOFF_KAFKA_CONNECT_TIMEOUT": "30"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "the TLS connection to Kafka failed" in done.stderr and "CERTIFICATE_VERIFY_FAILED" in done.stderr, (
        done.stderr
    )
