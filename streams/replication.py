"""How many copies of every topic a deployment keeps: the replication factor and min.insync.replicas.

Without flags the factor is ``min(3, brokers in the cluster)`` and ``min.insync.replicas`` is 2 once the
factor is 3 or more (1 below): with ``acks=all`` a write is then on two brokers before it is acknowledged,
and one broker may be lost (or restarted) without losing a write or refusing one. Explicit settings
(flags or ``HANDOFF_KAFKA_REPLICATION_FACTOR`` / ``HANDOFF_KAFKA_MIN_INSYNC_REPLICAS``) are taken as they
are and existing topics must then match them exactly.

This module is light on purpose (no Kafka client imports): the CLI parsers use it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

ENV_FACTOR = "HANDOFF_KAFKA_REPLICATION_FACTOR"
ENV_MIN_INSYNC = "HANDOFF_KAFKA_MIN_INSYNC_REPLICAS"
MAX_DEFAULT_FACTOR = 3


@dataclass(frozen=True)
class Replication:
    """The configured settings; None means the default for the cluster's size."""

    factor: int | None = None
    min_insync: int | None = None

    def resolve(self, brokers: int) -> tuple[int, int]:
        """The factor and min ISR that new topics get on a cluster of `brokers` live brokers."""
        factor = self.factor if self.factor is not None else max(1, min(MAX_DEFAULT_FACTOR, brokers))
        return factor, self.min_insync if self.min_insync is not None else default_min_insync(factor)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Replication:
        """The settings of the ``HANDOFF_KAFKA_*`` variables (unset or empty: the default)."""
        factor = _positive(environ.get(ENV_FACTOR), ENV_FACTOR)
        return cls(factor, _positive(environ.get(ENV_MIN_INSYNC), ENV_MIN_INSYNC))


def default_min_insync(factor: int) -> int:
    """2 from a factor of 3 on (a write survives one lost broker and one broker may be away), else 1."""
    return 2 if factor >= MAX_DEFAULT_FACTOR else 1


def _positive(text: str | None, name: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def _at_least_one(text: str) -> int:
    try:
        value = _positive(text, "the value")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value is None:
        raise argparse.ArgumentTypeError("a number is needed")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--replication-factor`` and ``--min-insync-replicas`` (defaults: the environment, then the cluster's size)."""
    parser.add_argument(
        "--replication-factor",
        type=_at_least_one,
        default=None,
        metavar="N",
        help=f"copies of every topic this creates, and the least existing ones must have (default: ${ENV_FACTOR} "
        "or min(3, brokers in the cluster))",
    )
    parser.add_argument(
        "--min-insync-replicas",
        type=_at_least_one,
        default=None,
        metavar="N",
        help=f"min.insync.replicas of those topics (default: ${ENV_MIN_INSYNC} or 2 when the factor is 3 or more, "
        "else 1)",
    )


def from_arguments(ns: argparse.Namespace, environ: Mapping[str, str]) -> Replication:
    """The flags of `add_arguments`, each falling back to its environment variable."""
    env = Replication.from_env(environ)
    flag_factor, flag_min_insync = getattr(ns, "replication_factor", None), getattr(ns, "min_insync_replicas", None)
    factor = flag_factor if flag_factor is not None else env.factor
    min_insync = flag_min_insync if flag_min_insync is not None else env.min_insync
    return Replication(factor, min_insync)
