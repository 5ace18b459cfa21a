"""Upcasters: pure ``dict -> dict`` steps that bring an old event payload up one schema version.

Keyed by ``(type, the schemaVersion it upgrades from)``. Every published ``(type, schemaVersion)`` has
a golden fixture under ``tests/golden/events`` that today's code must still decode through these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handoff.kernel.package import estimate_tokens

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def context_appended_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 records ``tokens``, the content's estimated token count, so readers need not re-estimate it."""
    return {**data, "tokens": estimate_tokens(str(data.get("content", "")))}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("ContextAppended", 1): context_appended_v1_to_v2,
}
