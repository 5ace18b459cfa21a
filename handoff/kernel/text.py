"""Text that people read or that names someone: agent-name rules, and control characters made visible.

An agent name is an identity, so two names that look the same must be the same name: names are
NFC-normalised, and names that hide characters (C0/C1 controls, bidi overrides and isolates,
zero-width characters) or mix easily confused scripts (Latin ``a`` beside Cyrillic ``а``) are refused.
Everything printed for a person (``handoff audit``, ``verify``) goes through `escape_controls`, so a
stored ESC sequence cannot rewrite a terminal.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# C0 and C1 controls, DEL, zero-width characters, bidi embeddings/overrides/isolates and marks, the BOM.
_HIDDEN: Final = "\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
HIDDEN_CHARACTERS: Final = re.compile(f"[{_HIDDEN}]")

# Scripts whose letters are confusable with one another; a name may use letters from one of them only.
_CONFUSABLE_SCRIPTS: Final = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"})


def agent_name_problem(name: str) -> str | None:
    """Why `name` cannot be an agent name (already NFC-normalised), or None if it can."""
    hidden = HIDDEN_CHARACTERS.search(name)
    if hidden is not None:
        return f"agent names may not contain U+{ord(hidden.group()):04X} (a control, bidi or zero-width character)"
    if name.isascii():
        return None
    if not unicodedata.is_normalized("NFC", name):
        return "agent names must be NFC-normalised"
    scripts = {_script(c) for c in name if c.isalpha()} & _CONFUSABLE_SCRIPTS
    if len(scripts) > 1:
        return f"agent names may not mix the look-alike scripts {', '.join(sorted(scripts))}"
    return None


def normalise_agent_name(name: str) -> str:
    """The NFC form of `name` (ASCII, the usual case, is returned as it is)."""
    return name if name.isascii() else unicodedata.normalize("NFC", name)


def _script(char: str) -> str:
    """The script of a letter, as the first word of its Unicode name (``LATIN``, ``CYRILLIC`` …)."""
    return unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]


_ESCAPED: Final = re.compile(f"[{_HIDDEN}]")


def escape_controls(text: str) -> str:
    """`text` with every control, bidi and zero-width character written as a visible escape."""
    if text.isprintable():
        return text
    return _ESCAPED.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
