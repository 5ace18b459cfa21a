"""The accelerators' gate: on only at the exact tested versions and with the switch on; otherwise one WARNING."""

from __future__ import annotations

import asyncio
import logging
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from handoff.accel import gate
from handoff.mcp import http
from handoff.mcp.subscriptions import Notifier
from streams.transactions import PublicTransactionalWriter, transactional_writer

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.fixture(autouse=True)
def fresh_verdicts() -> Iterator[None]:
    gate.forget()
    yield
    gate.forget()


def _other_aiokafka(monkeypatch: pytest.MonkeyPatch) -> None:
    real = gate.installed_version
    monkeypatch.setattr(gate, "installed_version", lambda dist: "0.15.0" if dist == "aiokafka" else real(dist))


def _accel_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "handoff.accel" and r.levelno == logging.WARNING]


def test_an_accelerator_runs_at_its_tested_versions_with_its_switch_on(caplog: pytest.LogCaptureFixture) -> None:
    for accel in gate.ACCELERATORS:
        assert gate.enabled(accel), gate.mismatch(accel)
    assert _accel_warnings(caplog) == []


def test_another_installed_version_keeps_it_off_with_one_warning_that_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _other_aiokafka(monkeypatch)
    assert not gate.enabled(gate.KAFKA_TXN)
    assert not gate.enabled(gate.KAFKA_TXN)  # asked again (another partition's decider): no second warning
    (warning,) = _accel_warnings(caplog)
    assert "kafka-txn" in warning and "aiokafka 0.15.0 is installed, tested: 0.14.0" in warning
    assert "producer.transaction()" in warning  # what runs instead
    assert gate.enabled(gate.MCP_FAST_PATH)  # the others do not depend on aiokafka


def test_with_another_version_the_public_paths_are_the_ones_built(monkeypatch: pytest.MonkeyPatch) -> None:
    _other_aiokafka(monkeypatch)
    real = gate.installed_version
    monkeypatch.setattr(gate, "installed_version", lambda dist: "0.99.0" if dist == "uvicorn" else real(dist))
    assert isinstance(transactional_writer(object(), accel=True), PublicTransactionalWriter)
    assert http._http_protocol(True) == "httptools"  # noqa: SLF001 - the protocol serve hands uvicorn


def test_with_another_sdk_a_legacy_subscriber_is_kept_until_it_unsubscribes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = gate.installed_version
    monkeypatch.setattr(gate, "installed_version", lambda dist: "2.4.0" if dist == "mcp" else real(dist))
    notifier = Notifier()
    session, uri = object(), "handoff://sessions/s"  # no connection to hook: the hook must not be tried
    asyncio.run(notifier.subscribe(session, uri))  # type: ignore[arg-type]
    assert notifier.subscriber_count() == 1
    notifier.unsubscribe(session, uri)  # type: ignore[arg-type]
    assert notifier.subscriber_count() == 0
    assert any("mcp-session-close" in w and "mcp 2.4.0" in w for w in _accel_warnings(caplog))


def test_a_switch_turned_off_is_obeyed_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="handoff.accel")
    assert not gate.enabled(gate.MCP_FAST_PATH, switch=False)
    assert not gate.enabled(gate.KAFKA_FETCH, switch=False)
    assert _accel_warnings(caplog) == []
    assert [r.levelno for r in caplog.records if r.name == "handoff.accel"] == [logging.INFO, logging.INFO]


def test_a_missing_distribution_counts_as_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "installed_version", lambda dist: None)
    assert gate.mismatch(gate.UVICORN_COALESCE) == "no uvicorn is installed; no httptools is installed"


def test_the_tested_versions_are_the_pinned_ones() -> None:
    # Bumping a pin without testing the accelerators on it would only switch them off, with a warning in
    # every process: this makes the bump and the re-test one change.
    pins = {}
    for spec in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        name, version = re.split(r"==", spec.split("#")[0].strip())
        pins[name.lower()] = version
    for accel in gate.ACCELERATORS:
        for dist, tested in accel.tested.items():
            if dist in pins:
                assert pins[dist] == tested, f"{accel.name}: pinned {dist}=={pins[dist]}, tested {tested}"
