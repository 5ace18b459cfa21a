"""`streams.security.KafkaSecurity`: flags and HANDOFF_KAFKA_* become aiokafka's keyword arguments."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from handoff.bootstrap.serve import kafka_settings
from handoff.bootstrap.worker import worker_config
from handoff.cli import build_parser
from handoff.config import read_env
from streams.security import PLAINTEXT, KafkaSecurity, refusal


def test_plaintext_is_the_default_and_adds_no_arguments() -> None:
    assert KafkaSecurity.from_options(None, {}) == PLAINTEXT
    assert PLAINTEXT.client_kwargs() == {}


def test_sasl_plaintext_from_the_environment() -> None:
    environ = {
        "HANDOFF_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
        "HANDOFF_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "HANDOFF_KAFKA_SASL_USERNAME": "app",
        "HANDOFF_KAFKA_SASL_PASSWORD": "s3cret",
    }
    security = KafkaSecurity.from_options(None, environ)
    assert security.client_kwargs() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "app",
        "sasl_plain_password": "s3cret",
    }
    assert "s3cret" not in repr(security)


def test_flags_win_over_the_environment_and_the_password_comes_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\nignored\n")
    ns = build_parser().parse_args(
        ["worker", "--kafka", "b:9092", "--kafka-security-protocol", "sasl_ssl", "--kafka-sasl-mechanism",
         "SCRAM-SHA-256", "--kafka-sasl-username", "flag-user", "--kafka-sasl-password-file", str(tmp_path / "pw")]
    )  # fmt: skip
    environ = {"HANDOFF_KAFKA_SASL_USERNAME": "env-user", "HANDOFF_KAFKA_SASL_PASSWORD": "from-env"}
    security = KafkaSecurity.from_options(ns, environ)
    assert (security.protocol, security.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (security.sasl_username, security.sasl_password) == ("flag-user", "from-file")
    kwargs = security.client_kwargs()
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED and kwargs["ssl_context"].check_hostname


def test_every_composition_root_reads_the_settings(tmp_path: Path) -> None:
    environ = {"HANDOFF_KAFKA_SECURITY_PROTOCOL": "SSL"}
    worker_ns = build_parser().parse_args(["worker", "--kafka", "b:9092", "--kafka-security-protocol", "SSL"])
    assert worker_config(worker_ns, read_env({})).security.protocol == "SSL"
    assert kafka_settings("b:9092", environ).security.protocol == "SSL"
    serve_ns = build_parser().parse_args(
        ["serve", "--kafka", "b:9092", "--kafka-security-protocol", "SASL_SSL",
         "--kafka-sasl-username", "u", "--kafka-sasl-password-file", "/dev/null"]
    )  # fmt: skip
    assert kafka_settings("b:9092", {}, serve_ns).security.protocol == "SASL_SSL"
    for command in (["verify", "--kafka", "b"], ["export", "--kafka", "b"], ["token", "list", "--kafka", "b"]):
        ns = build_parser().parse_args([*command, "--kafka-security-protocol", "ssl"])
        assert KafkaSecurity.from_options(ns, {}).protocol == "SSL"


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"HANDOFF_KAFKA_SECURITY_PROTOCOL": "TLS"}, "expected one of PLAINTEXT, SSL"),
        ({"HANDOFF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs a username and a password"),
        ({"HANDOFF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HANDOFF_KAFKA_SASL_USERNAME": "u"}, "and a password"),
        ({"HANDOFF_KAFKA_SASL_MECHANISM": "GSSAPI"}, "SASL mechanism 'GSSAPI'"),
        ({"HANDOFF_KAFKA_SSL_CAFILE": "/ca.pem"}, "the security protocol is PLAINTEXT"),
        ({"HANDOFF_KAFKA_SECURITY_PROTOCOL": "SSL", "HANDOFF_KAFKA_SSL_KEYFILE": "/k.pem"}, "needs its certificate"),
    ],
)
def test_settings_that_do_not_fit_together_are_refused_with_a_sentence(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        KafkaSecurity.from_options(None, environ)


def test_an_unreadable_password_file_is_refused_with_its_name(tmp_path: Path) -> None:
    ns = build_parser().parse_args(["worker", "--kafka-sasl-password-file", str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="cannot read the Kafka SASL password file .*missing"):
        KafkaSecurity.from_options(ns, {})


def test_a_missing_ca_file_fails_when_the_context_is_made() -> None:
    security = KafkaSecurity(protocol="SSL", ssl_cafile="/nonexistent/ca.pem")
    with pytest.raises(OSError):
        security.client_kwargs()


def test_refusals_name_the_credentials_or_tls_and_nothing_else() -> None:
    sasl = "KafkaConnectionError: ...; KafkaConnectionError: [Error 58] SaslAuthenticationFailed: Authentication failed"
    assert "credentials" in (refusal(sasl) or "")
    assert "TLS" in (refusal("SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]") or "")
    assert refusal("KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 9, 2)]") is None
