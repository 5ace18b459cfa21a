"""The ``--codebase-root`` option of ``serve`` and ``stdio`` (CONTRACT §9): where `analyze_codebase` may read.

Kept apart from `handoff.mcp.codebase_tool` so that parsing it imports nothing of the server.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence

ENV = "HANDOFF_CODEBASE_ROOTS"


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--codebase-root DIR`` (repeatable) to a command."""
    parser.add_argument(
        "--codebase-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory analyze_codebase may read files under (repeatable; relative filePaths resolve against "
        f"the first; default: ${ENV}, {os.pathsep}-separated; none: the tool answers NOT_PERMITTED). In Kafka "
        "mode give it to `serve --kafka`: the files are read where the adapter runs",
    )


def codebase_roots(ns: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The roots asked for (the flags, else the environment), each an existing directory, as real paths.

    ValueError, naming the root, when one is not a directory: a typo must not silently turn the tool off.
    """
    given: Sequence[str] = getattr(ns, "codebase_root", None) or [
        part for part in (environ.get(ENV) or "").split(os.pathsep) if part
    ]
    roots: list[str] = []
    for root in given:
        real = os.path.realpath(os.path.expanduser(root))
        if not os.path.isdir(real):
            raise ValueError(f"--codebase-root {root!r} is not a directory")
        if real not in roots:
            roots.append(real)
    return tuple(roots)
