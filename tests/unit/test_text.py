from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handoff.kernel.text import HIDDEN_CHARACTERS, agent_name_problem, escape_controls, normalise_agent_name


@given(st.text())
def test_escaped_text_holds_no_control_bidi_or_zero_width_character(text: str):
    assert HIDDEN_CHARACTERS.search(escape_controls(text)) is None


@given(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P", "Zs"])))
def test_printable_ascii_is_printed_as_it_is(text: str):
    assert escape_controls(text) == text


def test_an_escape_sequence_becomes_visible_text():
    assert escape_controls("a\x1b[8mb\u202ec") == "a\\x1b[8mb\\u202ec"


@pytest.mark.parametrize("name", ["alice", "agent-7", "Пётр", "Ελένη", "東京エージェント", "agent 東京", "Rémy"])
def test_ordinary_names_pass(name: str):
    assert agent_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("\u0430lice", "look-alike scripts CYRILLIC, LATIN"),
        ("\u03b1lice", "look-alike scripts GREEK, LATIN"),
        ("a\u200db", "U+200D"),
        ("a\u061cb", "U+061C"),
        ("Re\u0301my", "NFC"),
    ],
)
def test_names_that_hide_or_imitate_characters_are_refused(name: str, why: str):
    problem = agent_name_problem(name)
    assert problem is not None and why in problem


@given(st.text(min_size=1, max_size=20))
def test_a_normalised_name_is_never_refused_for_its_form(name: str):
    problem = agent_name_problem(normalise_agent_name(name))
    assert problem is None or "NFC" not in problem
