"""Every page, AppTest, on a data dir whose stored texts are Markdown (issue 11, case 8).

The data dir (tests/support/console_env.seed_hostile_console) holds an entity named
``Evil ![pixel](http://127.0.0.1:9/track.png) FC``, a rollback reason and an operator name, alert rule ids,
a note, a study name and a job error made of the same pixel, a ``javascript:`` link and Streamlit's
``:red[...]`` and ``:material/...:`` directives. Each page runs in-process; every text it hands to an element
Streamlit reads as Markdown (bodies of markdown, captions, headings, alerts, metric labels, values and help,
widget labels and help, progress texts, radio and segmented-control options) is collected from the element
protos. None may hold a bare construct; where a page shows one of the stored texts, it is there escaped.
Dataframes, code blocks, st.text, selectbox and multiselect options and input values are plain text in
Streamlit and are not collected. Chromium checks the same pages end to end in tests/faults/test_markdown.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

from console.text import md_escape
from tests.support.console_env import HostileData, hostile_console_env

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
TIMEOUT = 60  # seconds per script run: the first one imports altair/pandas and connects
PIXEL_URL = "http://127.0.0.1:9/track.png"

#: proto fields Streamlit reads as Markdown
MARKDOWN_FIELDS = frozenset({"body", "label", "help", "delta", "text", "title"})
#: element types whose ``body`` is plain text, or which hold no text of their own
PLAIN_ELEMENTS = frozenset({"Text", "Code", "Json", "Dataframe", "UnknownElement", "Exception"})
#: element types whose options are read as Markdown
MARKDOWN_OPTIONS = frozenset({"Radio", "ButtonGroup"})
#: what the stored texts would keep to draw markup (the pages' own icons and badges are not data): image or
#: link brackets, the seeded directives, raw HTML, a script URL
BARE_CONSTRUCT = re.compile(r"(?<!\\)!(?=\[)|(?<!\\)\]\(|:red\[alarm|:material/warning:|<img|javascript:")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Iterator[HostileData]:
    with hostile_console_env(tmp_path_factory, "markdown-pages", PIXEL_URL) as (_, data):
        yield data


def markdown_texts(at: AppTest) -> list[tuple[str, str, str]]:
    """(element type, field, text) of every text on the page that Streamlit reads as Markdown."""
    found: list[tuple[str, str, str]] = []

    def collect(kind: str, value, field: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                collect(kind, v, k)
        elif isinstance(value, list):
            for v in value:
                collect(kind, v, field)
        elif isinstance(value, str) and field in MARKDOWN_FIELDS:
            found.append((kind, field, value))

    def walk(node) -> None:
        children = getattr(node, "children", None) or {}
        for child in children.values() if isinstance(children, dict) else children:
            kind = type(child).__name__
            proto = getattr(child, "proto", None)
            if proto is not None and kind not in PLAIN_ELEMENTS:
                data = MessageToDict(proto)
                if kind in MARKDOWN_OPTIONS:
                    found.extend((kind, "options", str(o)) for o in data.get("options", []))
                collect(kind, {k: v for k, v in data.items() if k != "options"})
            walk(child)

    walk(at.main)
    walk(at.sidebar)
    return found


def run_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def check(at: AppTest, *shown: str) -> list[tuple[str, str, str]]:
    """No Markdown text of the page keeps a bare construct; each of ``shown`` is in one of them, escaped."""
    texts = markdown_texts(at)
    bare = [t for t in texts if BARE_CONSTRUCT.search(t[2])]
    assert bare == [], bare
    for text in shown:
        assert any(md_escape(text) in t[2] for t in texts), (text, texts)
    return texts


def test_overview_names_firing_rules_as_text(hostile):
    """case 8: the Overview's alert banner names rules whose ids are Markdown (the acknowledged one is only counted)."""
    texts = check(run_page("pages/overview.py"), hostile.rule_ids[0])
    assert not any(md_escape(hostile.rule_ids[1]) in t[2] for t in texts)


def test_hypotheses_shows_the_entity_and_its_details_as_text(hostile):
    """case 8: the entity's name (header), sport (details) and the run the page makes on it."""
    at = run_page("pages/hypotheses.py")
    at.text_input(key="entity_query").input(hostile.entity_name).run()
    assert not at.exception, [e.value for e in at.exception]
    check(at, hostile.entity_name, hostile.sport)
    at.button(key="entity_run_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "Last run" for s in at.subheader)
    check(at, hostile.entity_name)


def test_hypotheses_no_match_echoes_the_query_as_text(hostile):
    """case 8: what an operator typed comes back in the "no entity matches" warning as text."""
    at = run_page("pages/hypotheses.py")
    query = f"nothing {hostile.pixel}"
    at.text_input(key="entity_query").input(query).run()
    check(at, repr(query))


def test_rollout_shows_the_rollback_reason_and_operator_as_text(hostile):
    """case 8: the rolled-back run's message (operator and reason as typed) and who started it."""
    check(run_page("pages/rollout.py"), f"rolled back by {hostile.actor}: {hostile.reason}", hostile.actor)


def test_alerts_acknowledgement_message_names_rule_and_operator_as_text(hostile):
    """case 8: acknowledging a rule whose id is Markdown (the message names it as text)."""
    at = run_page("pages/alerts.py")
    check(at)
    at.text_input(key="ack_note").input(hostile.note)
    next(b for b in at.button if b.label == "Acknowledge").click().run()
    assert not at.exception, [e.value for e in at.exception]
    check(at, f"acknowledged {hostile.rule_ids[0]} as local")


def test_tuning_shows_the_study_name_and_job_error_as_text(hostile):
    """case 8: a study's name (heading), its job's last message (progress) and error."""
    check(run_page("pages/tuning.py"), hostile.study_name, hostile.job_error, f"trial 1 {hostile.pixel}")


@pytest.mark.parametrize("page", ["pages/reports.py", "pages/cache.py"])
def test_other_pages_keep_no_bare_construct(hostile, page):
    """case 8: the Reports page shows the report as code and a data: frame; the Cache page only figures."""
    check(run_page(page))
