"""The Tuning page's pure helpers (console/tuning_view.py): the status line, the trials table's vocabulary,
the importance, slice and parallel-coordinates frames and charts, the interval text and warning, the winner's
diff and tiles."""

from __future__ import annotations

import re

import pandas as pd

from console import tuning_view as tv
from engine.core.configs import config_diff
from engine.core.params import ParameterConfig
from engine.tuning.analysis import Interval
from engine.tuning.store import Trial

RAW = re.compile(r"\b(None|nan|NaN|inf|Infinity|complete)\b")


def trial(n: int, score: float | None, point: dict, holdout: float | None = None) -> Trial:
    state = "complete" if score is not None else "failed"
    error = None if score is not None else "ConfigError: invalid combination"
    return Trial(1, n, state, point, None, "", score, None, error, 0.0, 1.5, holdout, None)


TRIALS = [
    trial(0, 1.0, {"max_iterations": 20, "delta_accept": 0.06}, holdout=0.9),
    trial(1, 2.0, {"max_iterations": 30, "delta_accept": 0.10}, holdout=1.4),
    trial(2, None, {"max_iterations": 40, "delta_accept": 0.02}),
    trial(3, 1.5, {"max_iterations": 25, "delta_accept": 0.08}),
]
PARAMS = ("max_iterations", "delta_accept")


def test_the_trials_table_reads_in_words_with_units_and_no_raw_missing_values():
    table = tv.trials_table(TRIALS, PARAMS)
    assert list(table["state"]) == ["finished", "finished", "failed", "finished"]
    assert "training score (per entity)" in table.columns and "cost per entity (USD)" in table.columns
    assert "config_hash" not in table.columns and "holdout_score" not in table.columns
    assert table.loc[2, "training score (per entity)"] == "—"
    assert table.loc[0, "error"] == "—" and table.loc[2, "error"].startswith("ConfigError")
    assert not RAW.search(table.astype(str).to_string())
    formats = tv.number_formats(table)
    assert formats["duration (s)"] == "%.2f" and "training score (per entity)" not in formats  # that one is text


def test_the_status_line_follows_the_state_and_never_keeps_a_stale_worker_message():
    result = {"winner": {"trial": 4}, "winner_is_base": False}
    done = tv.status_line(
        "finished", trials_done=5, trials_total=5, job_message="re-scoring trial 1 on the hold-out", result=result
    )
    assert done == "finished · 5/5 trials · trial 4 won on the hold-out entities"
    base = tv.status_line(
        "finished", trials_done=5, trials_total=5, result={"winner": {"trial": 0}, "winner_is_base": True}
    )
    assert "the current config (trial 0) won" in base
    stopped = tv.status_line("cancelled", trials_done=2, trials_total=5, job_message="trial 2/4 done")
    assert stopped == "cancelled · 2/5 trials · last step: trial 2/4 done · Resume continues from the finished trials"
    assert tv.status_line("queued", trials_done=0, trials_total=5, job_message="").startswith("queued")
    running = tv.status_line("running", trials_done=2, trials_total=5, job_message="trial 1/4 done")
    assert running == "running · 2/5 trials · trial 1/4 done"
    cancelling = tv.status_line("running", trials_done=2, trials_total=5, job_message="x", cancel_requested=True)
    assert "cancel requested: it stops after the trial in progress" in cancelling and "x" not in cancelling
    assert tv.status_line("dead", trials_done=2, trials_total=5).startswith("worker stopped")


def test_importance_frame_and_chart():
    frame = tv.importance_frame({"delta_accept": 0.2, "max_iterations": 0.8})
    assert list(frame["parameter"]) == ["max_iterations", "delta_accept"]
    assert list(frame["group"]) == ["search and stop rules", "confidence changes per decision"]
    spec = tv.importance_chart(frame).to_dict()
    assert spec["mark"]["type"] == "bar"
    assert tv.top_params({"delta_accept": 0.2, "max_iterations": 0.8}, PARAMS, n=1) == ["max_iterations"]
    assert tv.top_params({}, PARAMS) == list(PARAMS)


def test_slice_and_parallel_frames_cover_complete_trials_only():
    frame = tv.trials_frame(TRIALS, PARAMS)
    long = tv.slice_frame(frame, list(PARAMS))
    assert len(long) == 3 * 2 and set(long["trial"]) == {0, 1, 3}
    assert set(long.loc[long["trial"] == 0, "kind"]) == {"trial 0 (current config)"}
    tv.slice_chart(long).to_dict()
    par = tv.parallel_frame(frame, ["max_iterations"])
    assert list(dict.fromkeys(par["axis"])) == ["max_iterations", "training score (per entity)"]
    assert par["position"].between(0, 1).all()
    top = par[(par["axis"] == "max_iterations") & (par["trial"] == 1)]
    assert float(top["position"].iloc[0]) == 1.0  # 30 is the highest tried among complete trials
    assert tv.parallel_chart(par).to_dict()["mark"]["type"] == "line"


def test_filter_bounds():
    assert tv.filter_bounds(TRIALS) == (1.0, 2.0)
    assert tv.filter_bounds(TRIALS, "max_iterations") == (20.0, 40.0)
    assert tv.filter_bounds(TRIALS[:1]) is None


def test_interval_text_and_small_holdout_warning():
    iv = Interval(mean=0.66, low=-0.12, high=1.41, n=15, confidence=0.95)
    text = tv.interval_text(iv)
    assert text == "+0.6600 per entity (95% interval -0.1200 to +1.4100, paired bootstrap over 15 hold-out entities)"
    assert "no interval" in tv.interval_text(None)
    assert tv.small_holdout_warning(15) == (
        "15 hold-out entities: the interval is wide; re-score on more before trusting it "
        "(at least 200 is the rule of thumb)."
    )
    assert tv.small_holdout_warning(200) is None


def test_result_tiles_carry_the_interval_and_never_read_none():
    result = {
        "base": {"holdout_score": 0.9},
        "winner": {"trial": 4, "holdout_score": 1.4, "gap": None},
        "improvement_holdout": 0.5,
    }
    tiles = dict((label, value) for label, value, _ in tv.result_tiles(result, Interval(0.5, 0.1, 0.9, 300, 0.95)))
    assert tiles["Hold-out improvement"] == "+0.5000"
    assert tv.interval_delta(Interval(0.5, 0.1, 0.9, 300, 0.95)) == "95% interval +0.10 to +0.90"
    assert tv.interval_delta(None) is None
    assert tiles["Optimism gap"] == "—"
    assert tv.result_tiles(result)[2][1] == "+0.5000"


def test_the_winner_diff_names_groups_in_words():
    live = ParameterConfig()
    win = live.with_changes(delta_accept=0.1, value_csuite=2.0)
    frame = tv.winner_diff_frame(config_diff(live, win))
    assert list(frame["parameter"]) == ["value_csuite", "delta_accept"]
    assert list(frame["group"]) == ["EIG category values", "confidence changes per decision"]
    assert tv.winner_heading({"winner": {"trial": 4, "score": 1.23456, "holdout_score": None}}) == (
        "Winner: trial 4 · training score 1.2346 · hold-out score — (per entity)"
    )
    said = tv.handed_over_text({"hash": "abc123", "source": "tuning study 3 (trial 4)", "path": "/x/y.json"})
    assert said.startswith("Handed to rollout: config abc123 from tuning study 3 (trial 4)")
    assert isinstance(tv.holdout_table(tv.holdout_frame(TRIALS, 1)), pd.DataFrame)
