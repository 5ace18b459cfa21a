"""Times as the kernel carries them: ISO 8601 UTC strings with milliseconds and ``Z``, which sort as they compare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def parse_time(at: str) -> datetime:
    """An ISO 8601 time as the clock writes it (``...Z``)."""
    return datetime.fromisoformat(at)


def format_time(at: datetime) -> str:
    """The clock's own format: UTC, milliseconds, ``Z`` (so times compare as strings)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def plus_seconds(at: str, seconds: int) -> str:
    """`at` moved on by `seconds`."""
    return format_time(parse_time(at) + timedelta(seconds=seconds))
