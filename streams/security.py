"""`KafkaSecurity`: how every Kafka client of the project authenticates and encrypts (CONTRACT §7, Kafka).

One frozen settings object, read once by a composition root (`handoff serve --kafka`, `handoff worker`,
the `--kafka` audit and token commands) from its flags or the ``HANDOFF_KAFKA_*`` environment, and
handed to every place that builds an aiokafka producer, consumer, admin client or client, which
spreads `KafkaSecurity.client_kwargs` into the constructor. The default is PLAINTEXT with nothing
else: today's behaviour, what the local broker and the tests use.

Settings (flag / environment):

- ``--kafka-security-protocol`` / ``HANDOFF_KAFKA_SECURITY_PROTOCOL``: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
- ``--kafka-sasl-mechanism`` / ``HANDOFF_KAFKA_SASL_MECHANISM``: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (default PLAIN)
- ``--kafka-sasl-username`` / ``HANDOFF_KAFKA_SASL_USERNAME``
- ``--kafka-sasl-password-file`` / ``HANDOFF_KAFKA_SASL_PASSWORD`` (the password itself; a flag would
  show it in the process list, so the flag names a file whose first line is the password)
- ``--kafka-ssl-cafile`` / ``HANDOFF_KAFKA_SSL_CAFILE``: the CA that signed the brokers' certificates
  (default: the system's trust store)
- ``--kafka-ssl-certfile``, ``--kafka-ssl-keyfile`` / ``HANDOFF_KAFKA_SSL_CERTFILE``, ``_SSL_KEYFILE``:
  a client certificate, for brokers that authenticate clients by TLS (``ssl.client.auth=required``)

A flag wins over its variable. This module imports no Kafka client at import time: the CLI parses
these options without paying for aiokafka.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    """The security settings of a Kafka client; `KafkaSecurity()` is PLAINTEXT."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"Kafka security protocol {self.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if self.sasl_mechanism not in MECHANISMS:
            raise ValueError(f"Kafka SASL mechanism {self.sasl_mechanism!r}: expected one of {', '.join(MECHANISMS)}")
        if self.sasl and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(
                f"Kafka security protocol {self.protocol} needs a username and a password "
                "(--kafka-sasl-username and --kafka-sasl-password-file, or HANDOFF_KAFKA_SASL_USERNAME and _PASSWORD)"
            )
        if not self.tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ValueError(
                f"Kafka TLS files are given but the security protocol is {self.protocol}; use SSL or SASL_SSL"
            )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("a Kafka client key (--kafka-ssl-keyfile) needs its certificate (--kafka-ssl-certfile)")

    @property
    def sasl(self) -> bool:
        """Whether the client authenticates with SASL."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted."""
        return self.protocol in ("SSL", "SASL_SSL")

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient/AIOKafkaClient; empty for PLAINTEXT."""
        if self.protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.tls:
            kwargs["ssl_context"] = _ssl_context(self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        return kwargs

    @classmethod
    def from_options(cls, ns: argparse.Namespace | None, environ: Mapping[str, str]) -> KafkaSecurity:
        """The settings from the flags of `add_options` (if parsed), else from ``HANDOFF_KAFKA_*``.

        Raises ValueError with a sentence for the user when they do not fit together, or when the
        password file cannot be read.
        """

        def pick(name: str) -> str | None:
            flag = getattr(ns, f"kafka_{name}", None) if ns is not None else None
            return flag or environ.get(f"HANDOFF_KAFKA_{name.upper()}") or None

        password = environ.get("HANDOFF_KAFKA_SASL_PASSWORD")
        password_file = getattr(ns, "kafka_sasl_password_file", None) if ns is not None else None
        if password_file:
            try:
                lines = Path(password_file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ValueError(f"cannot read the Kafka SASL password file {password_file}: {exc.strerror}") from exc
            password = lines[0] if lines else ""
        return cls(
            protocol=(pick("security_protocol") or "PLAINTEXT").upper(),
            sasl_mechanism=(pick("sasl_mechanism") or "PLAIN").upper(),
            sasl_username=pick("sasl_username"),
            sasl_password=password,
            ssl_cafile=pick("ssl_cafile"),
            ssl_certfile=pick("ssl_certfile"),
            ssl_keyfile=pick("ssl_keyfile"),
        )


PLAINTEXT = KafkaSecurity()


@functools.cache
def _ssl_context(cafile: str | None, certfile: str | None, keyfile: str | None) -> Any:
    """One TLS context per set of files (aiokafka's helper: verifies the broker's name and certificate)."""
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile)


def add_options(parser: argparse.ArgumentParser) -> None:
    """The ``--kafka-*`` security flags of a command that talks to Kafka (defaults: ``HANDOFF_KAFKA_*``)."""
    group = parser.add_argument_group("Kafka security (default: PLAINTEXT; each flag also as HANDOFF_KAFKA_<NAME>)")
    group.add_argument(
        "--kafka-security-protocol", type=str.upper, choices=PROTOCOLS, metavar="PROTOCOL",
        help=f"{', '.join(PROTOCOLS)} (default: $HANDOFF_KAFKA_SECURITY_PROTOCOL or PLAINTEXT)",
    )  # fmt: skip
    group.add_argument(
        "--kafka-sasl-mechanism", type=str.upper, choices=MECHANISMS, metavar="MECHANISM",
        help=f"{', '.join(MECHANISMS)} (default: $HANDOFF_KAFKA_SASL_MECHANISM or PLAIN)",
    )  # fmt: skip
    group.add_argument("--kafka-sasl-username", metavar="NAME", help="default: $HANDOFF_KAFKA_SASL_USERNAME")
    group.add_argument(
        "--kafka-sasl-password-file", metavar="FILE",
        help="a file whose first line is the SASL password (default: $HANDOFF_KAFKA_SASL_PASSWORD, the password)",
    )  # fmt: skip
    group.add_argument(
        "--kafka-ssl-cafile", metavar="FILE", help="CA of the brokers (default: $HANDOFF_KAFKA_SSL_CAFILE)"
    )
    group.add_argument(
        "--kafka-ssl-certfile", metavar="FILE", help="client certificate (default: $HANDOFF_KAFKA_SSL_CERTFILE)"
    )
    group.add_argument("--kafka-ssl-keyfile", metavar="FILE", help="its key (default: $HANDOFF_KAFKA_SSL_KEYFILE)")


# How aiokafka reports a refused login or an untrusted broker, in the text of the error it raises.
_AUTH_FAILED = ("SaslAuthenticationFailed", "Authentication failed", "UnsupportedSaslMechanism", "IllegalSaslState")
_TLS_FAILED = ("CERTIFICATE_VERIFY_FAILED", "SSLCertVerificationError", "SSLError", "WRONG_VERSION_NUMBER")


def refusal(error: str) -> str | None:
    """The sentence for a start-up failure that is Kafka refusing this client's credentials or TLS, else None."""
    if any(mark in error for mark in _AUTH_FAILED):
        return (
            "Kafka refused this client's credentials (SASL authentication failed); check the Kafka security "
            "settings: --kafka-sasl-mechanism, --kafka-sasl-username, --kafka-sasl-password-file "
            "(or HANDOFF_KAFKA_SASL_*)"
        )
    if any(mark in error for mark in _TLS_FAILED):
        return (
            "the TLS connection to Kafka failed (is the broker's certificate signed by --kafka-ssl-cafile, "
            "and does the listener speak TLS? see --kafka-security-protocol)"
        )
    return None


async def diagnose(bootstrap: str, security: KafkaSecurity, timeout: float = 10.0) -> str | None:
    """Why one connection to the first bootstrap server fails ("SaslAuthenticationFailed: ..."), or None if it opens.

    For start-up failures: aiokafka logs the reason a bootstrap failed but raises "Unable to bootstrap"
    without it, so the composition roots try one connection to say whether it was the credentials or TLS.
    """
    import asyncio

    from aiokafka.conn import create_conn

    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        conn = await asyncio.wait_for(create_conn(host, int(port), **security.client_kwargs()), timeout)
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"{type(exc).__name__}: {exc}"
    conn.close()
    return None
