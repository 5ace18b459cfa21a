"""`handoff analytics`: the workers' Kafka security settings become faust's broker credentials, unchanged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.analytics import build_parser, faust_credentials, main
from streams.security import KafkaSecurity


def _what_faust_passes_to_aiokafka(security: KafkaSecurity) -> dict[str, Any]:
    auth = credentials_to_aiokafka_auth(faust_credentials(security))
    return {k: v for k, v in auth.items() if v is not None}


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"HANDOFF_KAFKA_SECURITY_PROTOCOL": "SSL"},
        {
            "HANDOFF_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "HANDOFF_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "HANDOFF_KAFKA_SASL_USERNAME": "analytics",
            "HANDOFF_KAFKA_SASL_PASSWORD": "s3cret",
        },
        {
            "HANDOFF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "HANDOFF_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "HANDOFF_KAFKA_SASL_USERNAME": "analytics",
            "HANDOFF_KAFKA_SASL_PASSWORD": "s3cret",
        },
    ],
    ids=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
)
def test_faust_gives_aiokafka_what_every_other_client_of_the_project_gets(environ: dict[str, str]) -> None:
    security = KafkaSecurity.from_options(None, environ)
    assert _what_faust_passes_to_aiokafka(security) == {"security_protocol": "PLAINTEXT", **security.client_kwargs()}


def test_the_security_flags_are_those_of_the_worker(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    ns = build_parser().parse_args([
        "--kafka", "b:9092", "--kafka-security-protocol", "sasl_plaintext", "--kafka-sasl-username", "analytics",
        "--kafka-sasl-password-file", str(tmp_path / "pw"),
    ])  # fmt: skip
    credentials = faust_credentials(KafkaSecurity.from_options(ns, {}))
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["sasl_plain_password"] == "from-file"


def test_settings_that_do_not_fit_together_exit_2_before_touching_kafka(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("HANDOFF_KAFKA_")]:
        monkeypatch.delenv(name)
    assert main(["--kafka", "b:9092", "--kafka-security-protocol", "SASL_SSL"]) == 2
    assert "needs a username and a password" in capsys.readouterr().err
