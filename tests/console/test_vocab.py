"""One vocabulary: missing and unbounded numbers, units, human labels (console.vocab), and the config diff."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from console import vocab
from console.configs_view import diff_frame
from engine.core.configs import config_diff, describe_diff
from engine.core.params import ParameterConfig


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        (float("nan"), "n/a"),
        (math.inf, "no upper bound"),
        (-math.inf, "no lower bound"),
        (1234.5, "1,234.50"),
        (7, "7.00"),
        (pd.NA, "—"),
    ],
)
def test_fmt_num_never_prints_none_nan_or_inf(value, shown):
    assert vocab.fmt_num(value) == shown


def test_rates_and_changes_carry_their_unit():
    assert vocab.fmt_pp(-0.3) == "-30.0 pp"
    assert vocab.fmt_pct(0.125) == "12.5%"
    assert vocab.fmt_pct(-0.6, signed=True) == "-60.0%"
    assert vocab.fmt_pp(None) == "—" and vocab.fmt_pct(float("nan")) == "n/a"


def test_internal_names_read_as_words():
    assert vocab.human("rolled_back") == "rolled back"
    assert vocab.human("min_duration_days") == "minimum duration (days)"
    assert vocab.human("some_new_state") == "some new state"
    assert vocab.human(None) == "—"


def test_display_frame_turns_missing_cells_into_text_and_keeps_complete_numbers():
    frame = pd.DataFrame({"low": [0.5, None], "n": [3, 4], "state": ["rolled_back", "passed"], "note": [None, "x"]})
    shown = vocab.display_frame(frame, names=("state",), specs={"low": ".1f"})
    assert shown["low"].tolist() == ["0.5", "—"]
    assert shown["n"].dtype.kind == "i"  # complete numeric columns still sort as numbers
    assert shown["state"].tolist() == ["rolled back", "passed"]
    assert shown["note"].tolist() == ["—", "x"]


def test_config_diff_lists_changed_values_only_with_their_bounds():
    live = ParameterConfig()
    candidate = live.with_changes(max_iterations=30, delta_accept=0.08)
    changes = config_diff(live, candidate)
    assert [c.name for c in changes] == ["delta_accept", "max_iterations"]
    assert changes[1].old == 20 and changes[1].new == 30 and changes[1].low <= 30 <= changes[1].high
    assert describe_diff(changes) == "delta_accept 0.06 → 0.08, max_iterations 20 → 30"
    assert config_diff(live, live) == [] and describe_diff([]) == "no parameter differs"
    frame = diff_frame(changes)
    assert frame["parameter"].tolist() == ["delta_accept", "max_iterations"]
    assert frame.iloc[1][["from", "to", "change", "default"]].tolist() == ["20", "30", "+10", "20"]
