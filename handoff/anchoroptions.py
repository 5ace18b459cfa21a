"""The periodic-anchor options of `serve` and `worker` (CONTRACT §8): --anchor-dir, --anchor-key, --anchor-every.

Parsing only: the `anchor` job that writes the files is built in `handoff.bootstrap.jobs`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EVERY_MINUTES = 60
MAX_EVERY_MINUTES = 7 * 24 * 60  # the jobs' interval bound: 7 days


@dataclass(frozen=True)
class AnchorOptions:
    """Where periodic anchors go, the key that signs them, and how often (seconds)."""

    folder: Path
    key: Path
    every_seconds: int


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add the anchor options to a command's parser."""
    group = parser.add_argument_group(
        "periodic anchors", "write a signed anchor (as `handoff anchor` prints) into a folder every N minutes"
    )
    group.add_argument("--anchor-dir", type=Path, metavar="DIR", help="write anchor-<time>-<position>.json files here")
    group.add_argument("--anchor-key", type=Path, metavar="FILE", help="the anchor.key of `handoff anchor --new-key`")
    group.add_argument(
        "--anchor-every",
        type=float,
        metavar="MINUTES",
        help=f"minutes between anchors (default: {DEFAULT_EVERY_MINUTES}; also the `anchor` job's interval, "
        "which update_job_config can change)",
    )


def anchor_options(ns: argparse.Namespace) -> AnchorOptions | None:
    """The options given, or None without ``--anchor-dir``; ValueError when they do not fit together."""
    folder, key, every = getattr(ns, "anchor_dir", None), getattr(ns, "anchor_key", None), ns.anchor_every
    if folder is None:
        if key is not None or every is not None:
            raise ValueError("--anchor-key and --anchor-every go with --anchor-dir")
        return None
    if key is None:
        raise ValueError("--anchor-dir needs --anchor-key: the anchor.key of `handoff anchor --new-key DIR`")
    if not key.is_file():
        raise ValueError(f"--anchor-key {key} is not a file; make one with `handoff anchor --new-key DIR`")
    minutes = DEFAULT_EVERY_MINUTES if every is None else every
    if not 1 / 60 <= minutes <= MAX_EVERY_MINUTES:
        raise ValueError(f"--anchor-every must lie within 1 second and {MAX_EVERY_MINUTES} minutes (7 days)")
    return AnchorOptions(folder, key, max(1, round(minutes * 60)))
