"""Every page, on a data dir with demo traffic, a finished pilot, a rolled-back run, evaluated alerts and a
finished tuning study, says nothing an operator cannot read (issue 12, points 4 and 8).

Each page runs in AppTest. Every text it shows (bodies, captions, headings, labels, help, metric values and
deltas, alerts, options, placeholders, progress texts) and every table cell is collected; none may read
"None", "nan", "inf" or "Infinity", or carry an internal snake_case name (a run state, an alert state, a stop
reason, a stage policy field). A table cell that is missing (Streamlit draws it as "None") fails too.
Parameter names (``max_iterations``) are the keys of the config files operators edit and are allowed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

from engine import rollout, tuning
from engine.discovery.demo import seed_demo_metrics
from engine.jobs.queue import JobState, JobStore, run_claimed
from engine.monitoring import alerts
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN
from tests.support.browser_harness import console_pages
from tests.support.console_env import seeded_console_env
from tests.support.rollouts import run_pilot_here

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
TIMEOUT = 90

#: words that only a program would print
RAW_VALUE = re.compile(r"\b(?:None|nan|NaN|inf|Infinity|NaT|null)\b")
#: internal names that must read as words (console.vocab.LABELS)
INTERNAL_NAMES = (
    "rolled_back",
    "rolling_back",
    "rollback_interrupted",
    "no_data",
    "depth_exhausted",
    "nothing_active",
    "no_channel",
    "cost_cap",
    "min_duration_days",
    "new_crashed",
    "old_crashed",
    "dry_run",
)
INTERNAL = re.compile(r"\b(?:" + "|".join(INTERNAL_NAMES) + r")\b")
#: proto fields holding text an operator reads
TEXT_FIELDS = frozenset(
    {"body", "label", "help", "delta", "text", "title", "value", "options", "placeholder", "caption", "message"}
)
#: elements whose text is a file's content or a program's answer on purpose (config JSON, a report preview)
VERBATIM = frozenset({"Code", "Json", "UnknownElement"})


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[dict]:
    with seeded_console_env(tmp_path_factory, "vocabulary-pages", 120, 7) as (settings, graph):
        ops = open_ops_db(settings)
        seed_demo_metrics(settings, graph, ops=ops, entities=40, slots=8, only_if_empty=False)
        work = tmp_path_factory.mktemp("vocabulary-work")
        pilot = run_pilot_here(settings, ops, graph, work)
        dry = rollout.start_rollout(settings, ops, stage="pilot", dry_run=True, launch=False, graph=graph, actor=ADMIN)
        rollout.rollback(settings, ops, dry, ADMIN, "checking the words", graph=graph)
        alerts.evaluate_alerts(ops, alerts.load_rules(settings), time.time())
        spec = tuning.StudySpec(
            method="random",
            iterations=3,
            params=("max_iterations", "delta_accept"),
            entities=tuning.EntitySpec(kind="catalogue", n=30),
            seed=1,
        )
        _, job, _ = tuning.start_study(ops, settings, spec, actor=ADMIN, launch=False)
        done = run_claimed(JobStore(ops), job.id, settings, poll_s=0.05)
        assert done.state is JobState.SUCCEEDED, done.error
        yield {"settings": settings, "runs": (pilot, dry), "entity": graph.list_entities(limit=1)[0]}


def shown_texts(at: AppTest) -> list[tuple[str, str]]:
    """(where, text) of every text and table cell the page shows."""
    found: list[tuple[str, str]] = []

    def collect(kind: str, value, field: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                collect(kind, v, k)
        elif isinstance(value, list):
            for v in value:
                collect(kind, v, field)
        elif isinstance(value, str) and field in TEXT_FIELDS:
            found.append((f"{kind}.{field}", value))

    def walk(node) -> None:
        children = getattr(node, "children", None) or {}
        for child in children.values() if isinstance(children, dict) else children:
            kind = type(child).__name__
            if kind == "Dataframe":
                frame = child.value
                if isinstance(frame, pd.DataFrame):
                    for column in frame.columns:
                        for value in frame[column].tolist():
                            cell = "None" if value is None or (isinstance(value, float) and value != value) else value
                            found.append((f"table column {column!r}", str(cell)))
                continue
            proto = getattr(child, "proto", None)
            if proto is not None and kind not in VERBATIM:
                collect(kind, MessageToDict(proto))
            walk(child)

    walk(at.main)
    walk(at.sidebar)
    return found


def unreadable(at: AppTest) -> list[str]:
    """Each text a program would print, as "<where>: <text>" (an empty list passes)."""
    return [f"{where}: {text}" for where, text in shown_texts(at) if RAW_VALUE.search(text) or INTERNAL.search(text)]


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow  # runs a pilot and a study in this process
@pytest.mark.parametrize("name", list(console_pages()))
def test_every_page_reads_in_words(console, name):
    at = open_page(f"pages/{name}.py")
    assert unreadable(at) == []


@pytest.mark.slow
def test_every_rollout_run_reads_in_words(console):
    at = open_page("pages/rollout.py")
    for run_id in console["runs"]:
        at.selectbox(key="rollout_run").select(run_id).run()
        assert not at.exception, [e.value for e in at.exception]
        assert unreadable(at) == [], f"rollout {run_id}"


@pytest.mark.slow
def test_an_entity_and_its_last_run_read_in_words(console):
    at = open_page("pages/hypotheses.py")
    at.text_input(key="entity_query").input(console["entity"].id).run()
    assert not at.exception, [e.value for e in at.exception]
    assert unreadable(at) == []


def test_the_checker_finds_what_it_looks_for():
    """The walk above would pass vacuously if the patterns matched nothing."""
    assert RAW_VALUE.search("threshold None") and RAW_VALUE.search("+inf") and RAW_VALUE.search("value nan")
    assert INTERNAL.search("state: rolled_back") and INTERNAL.search("min_duration_days 3")
    assert not RAW_VALUE.search("Nonexistent information") and not INTERNAL.search("rolled back")
