"""console.text: data put into a Markdown string is shown as the characters it is made of (issue 11, case 8).

What Streamlit's Markdown does with the results is checked in Chromium (tests/faults/test_markdown.py);
here, the strings themselves: every character that could start markup is escaped, nothing is lost.
"""

from __future__ import annotations

import string

import pytest
from streamlit.testing.v1 import AppTest

from console.text import md_code, md_escape
from tests.support.console_env import DIRECTIVES, SCRIPT_LINK, as_shown, tracking_pixel

HOSTILE = (
    tracking_pixel("http://127.0.0.1:9/track.png"),
    f"Evil {tracking_pixel('http://127.0.0.1:9/track.png')} FC",
    SCRIPT_LINK,
    DIRECTIVES,
    ":blue-badge[approved] :smile: :material/home:",
    "$x^2$ and $$y$$",
    "<img src=http://h/t.png> &amp; &#33;",
    "# heading",
    "- item",
    "1. item",
    "> quote",
    "a | b | c",
    "**bold** __bold__ *it* _it_ ~~gone~~",
    "`code` ``code``",
    "<http://h/autolink>",
    "back\\slash \\[ already escaped",
    "line one\n\nline two\r\n===",
    "Mönchengladbach 🏟 café",
    "",
)


@pytest.mark.parametrize("text", HOSTILE)
def test_every_punctuation_character_is_escaped_and_nothing_is_lost(text):
    escaped = md_escape(text)
    i = 0
    while i < len(escaped):  # read it as Markdown reads escapes: each backslash takes the next character
        c = escaped[i]
        if c == "\\":
            assert escaped[i + 1] in string.punctuation, escaped
            i += 2
            continue
        assert c not in string.punctuation, f"{c!r} left bare in {escaped!r}"
        i += 1
    assert as_shown(escaped) == text.replace("\r", " ").replace("\n", " ")  # line breaks aside, the same text


def test_line_breaks_become_spaces_and_other_characters_stay():
    assert md_escape("a\nb\r\nc\u2028d") == "a b  c d"
    assert md_escape("Mönchengladbach 🏟") == "Mönchengladbach 🏟"
    assert md_escape(42) == "42" and md_escape(0.5) == "0\\.5" and md_escape(None) == "None"


def test_the_tracking_pixel_becomes_its_characters():
    assert md_escape("Evil ![pixel](http://h/t.png) FC") == ("Evil \\!\\[pixel\\]\\(http\\:\\/\\/h\\/t\\.png\\) FC")
    # Streamlit rewrites ":material/" before parsing: escaped, the sequence is no longer there to rewrite
    assert ":material/" not in md_escape(":material/home:")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("evil-fc", "`evil-fc`"),
        ("a`b", "``a`b``"),
        ("a``b`c", "```a``b`c```"),
        ("`edge", "`` `edge ``"),
        ("edge ", "` edge  `"),
        ("x\ny", "`x y`"),
        ("", ""),
    ],
)
def test_code_spans_fence_any_backticks_inside(value, expected):
    assert md_code(value) == expected


def test_code_spans_break_streamlits_icon_rewrite():
    assert ":material/" not in md_code(":material/home:")
    assert md_code(":material/home:").replace("\u200d", "") == "`:material/home:`"


def drawn():
    import streamlit as st

    from console.text import md_code, md_escape

    name = st.session_state["name"]
    st.header(md_escape(name))
    st.caption(f"id {md_code(name)}")
    st.metric(md_escape(name), md_escape(name), help=md_escape(name))
    st.button(md_escape(name), help=md_escape(name))


def test_a_page_hands_streamlit_the_escaped_text():
    """AppTest: what reaches Streamlit's Markdown elements is the escaped text, never the raw construct."""
    name = f"Evil {tracking_pixel('http://127.0.0.1:9/track.png')} {SCRIPT_LINK} {DIRECTIVES}"
    at = AppTest.from_function(drawn)
    at.session_state["name"] = name
    at.run()
    assert not at.exception
    texts = [at.header[0].value, at.metric[0].label, at.metric[0].value, at.button[0].label]
    assert texts == [md_escape(name)] * 4
    assert at.caption[0].value.startswith("id `Evil ![pixel]")  # in code: Markdown shows code as it is
    assert all(as_shown(t) == name for t in texts)
    assert not any("![" in t or "](" in t or ":red[" in t for t in texts)
