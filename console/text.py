"""Stored and typed text put into Markdown the console draws: shown as it is, never interpreted.

Almost everything Streamlit draws reads Markdown: ``st.markdown``, ``st.caption``,
``st.title``/``header``/``subheader``, ``st.info``/``success``/``warning``/``error``/``toast``,
``st.write`` of a string, ``st.spinner`` and ``st.progress`` texts, metric labels, values, deltas
and help, and the label and help of every widget, expander and button (radio, pills and
segmented-control options too). An entity named ``Evil ![pixel](http://host/track.png) FC``
put there as it is draws an image, and the browser fetches its URL; ``:red[...]``,
``:material/...:``, ``$...$`` and ``[click](...)`` draw colour, icons, formulas and links.

``md_escape(value)`` is the one way data enters such a string: every ASCII punctuation character
gets a backslash (CommonMark lets any of them be escaped, and an escaped one is always literal),
so links, images, emphasis, code, HTML, tables, headings, lists, Streamlit's directives
(``:red[...]``, ``:material/...:``, ``:blue-badge[...]``), emoji shortcodes and formulas all show
as the characters they are made of. ``md_code(value)`` puts data in an inline code span (ids,
paths), with a fence longer than any run of backticks inside it. Use them for every interpolation
of data into a Markdown string; ``tests/console/test_markdown_sinks.py`` reads pages/ and
console/ and fails on an f-string given to a Markdown-reading call without one of them.

Where text needs no markup at all, ``st.text``, ``st.code`` or a dataframe cell (a text column,
not a link or Markdown column) shows it as it is without either.

Pure: no Streamlit.
"""

from __future__ import annotations

import string

#: What CommonMark lets a backslash escape: every ASCII punctuation character.
MARKDOWN_PUNCTUATION = frozenset(string.punctuation)

#: Line breaks of data become spaces: a stored value never starts a new paragraph, list or table row.
_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " ", "\u2028": " ", "\u2029": " "})


def md_escape(value: object) -> str:
    """``str(value)`` with every ASCII punctuation character backslash-escaped and line breaks as spaces.

    ``Evil ![pixel](http://h/t.png)`` becomes ``Evil \\!\\[pixel\\]\\(http\\:\\/\\/h\\/t\\.png\\)``, which
    Markdown draws as the original characters.
    """
    text = str(value).translate(_LINE_BREAKS)
    return "".join(f"\\{c}" if c in MARKDOWN_PUNCTUATION else c for c in text)


def md_code(value: object) -> str:
    """``str(value)`` as an inline code span: shown in a monospace font, character for character.

    The fence is one backtick longer than the longest run of backticks in the value, and a value
    that starts or ends with a backtick or a space is padded (CommonMark strips one space each
    side). Streamlit rewrites ``:material/`` before it parses, even in code, so that sequence is
    broken with a zero-width joiner. An empty value gives an empty string.
    """
    text = str(value).translate(_LINE_BREAKS).replace(":material/", ":\u200dmaterial/")
    if not text:
        return ""
    longest = run = 0
    for c in text:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    if text[0] in "` " or text[-1] in "` ":
        text = f" {text} "
    return f"{fence}{text}{fence}"


__all__ = ["MARKDOWN_PUNCTUATION", "md_code", "md_escape"]
