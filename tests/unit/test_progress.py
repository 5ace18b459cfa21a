"""The progress line of long reads of the log."""

from __future__ import annotations

import io

from handoff.audit.progress import Progress


def test_the_final_line_shows_the_exact_count_as_the_total_when_the_total_was_an_estimate():
    out = io.StringIO()
    progress = Progress("replay", total=200_042, stream=out)  # offsets: records and transaction markers
    progress.advance(195_000)  # the last batches of child processes are counted after their last report
    progress.done(200_000)
    assert out.getvalue().startswith("replay [##############################] 100% 200,000/200,000 events (")


def test_without_a_total_the_final_line_shows_the_count_and_no_bar():
    out = io.StringIO()
    progress = Progress("verify", stream=out)
    for _ in range(1000):
        progress.advance()
    progress.done()
    assert out.getvalue().startswith("verify 1,000 events (") and out.getvalue().endswith("s\n")
