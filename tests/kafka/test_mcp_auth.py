"""tests/e2e/test_auth.py (CONTRACT §7) against `serve --kafka --auth token|jwt` + one worker.

The principal travels inside each command to the worker that decides it, and the adapter filters
the workers' answers in the same place as the embedded engine's. Tokens are issued with
`handoff token --kafka` onto the installation's compacted token topic, which the adapter follows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e.auth_support import AUDIENCE, ISSUER, jwks_issuer
from e2e.test_auth import AuthContract, AuthServer

from kafka.mcp import running_kafka_mcp
from kafka.support import Broker

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def token_server(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    root = tmp_path_factory.mktemp("kafka-auth-token")
    with running_kafka_mcp(broker.bootstrap, root, "--auth", "token") as running:
        yield AuthServer("token", running.served, root / "serve", None, kafka=(broker.bootstrap, running.topics.prefix))


@pytest.fixture(scope="module")
def jwt_server(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    root = tmp_path_factory.mktemp("kafka-auth-jwt")
    with jwks_issuer() as issuer:
        jwt_args = ("--jwt-jwks-url", issuer.jwks_url, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)
        with running_kafka_mcp(
            broker.bootstrap, root, "--auth", "jwt", *jwt_args, "--jwt-role-claim", "role"
        ) as running:
            yield AuthServer("jwt", running.served, root / "serve", issuer)


@pytest.fixture(params=["token", "jwt"])
def server(request: pytest.FixtureRequest) -> AuthServer:
    """The suite runs once against each mode."""
    server: AuthServer = request.getfixturevalue(f"{request.param}_server")
    return server


class TestAuthKafka(AuthContract):
    """Against `serve --kafka --auth token|jwt` and one worker."""
