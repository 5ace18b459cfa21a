"""`bench.machine` measures what it says, on a small run (its figures themselves are not judged)."""

from __future__ import annotations

import math

from bench.machine import GAPS, measure, report


def test_measures_every_case_with_positive_finite_figures() -> None:
    trips, sleep_us = measure(round_trips=20)

    assert [t.idle_ms for t in trips] == [g * 1000 for g in GAPS]
    for t in trips:
        assert 0 < t.wall_us < 1e6 and math.isfinite(t.wall_us)
        assert 0 <= t.cpu_us < 1e6
    assert 0 <= sleep_us < 1e6
    rows = report(trips, sleep_us)
    assert len(rows) == len(GAPS) + 1 and "after 5 ms idle" in rows[2]
