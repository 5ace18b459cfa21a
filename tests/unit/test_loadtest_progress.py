from __future__ import annotations

import io

from handoff.loadtest.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_line_redrawn_in_place() -> None:
    out = Terminal()
    progress = Progress(out)
    progress.start(total=10.0, count=lambda: 1234)
    progress.write(final=False)
    progress.finish()
    text = out.getvalue()
    assert text.startswith("\rloadtest [") and text.count("\r") == 2 and text.endswith("\n")
    assert "1,234 calls" in text


def test_a_pipe_gets_plain_lines() -> None:
    out = io.StringIO()
    progress = Progress(out)
    progress.start(total=10.0, count=lambda: 7)
    progress.write(final=False)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue() and all("7 calls" in line for line in lines)


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    progress = Progress(out, quiet=True)
    progress.start(total=1.0, count=lambda: 1)
    progress.finish()
    assert out.getvalue() == ""
