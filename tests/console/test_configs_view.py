"""The Configs page's tables and texts (console.configs_view), without Streamlit."""

from __future__ import annotations

from pathlib import Path

from console import configs_view as cv
from engine.core.configs import LiveConfigEntry, SavedConfig, config_diff
from engine.core.params import PARAMETER_SPECS, ParameterConfig

LIVE = ParameterConfig(max_iterations=30)
DEFAULT_HASH = ParameterConfig().hash()
RAW = ("None", "nan", "NaN", "inf", "Infinity")


def texts_of(frame) -> list[str]:
    return [str(v) for v in frame.to_numpy().ravel()]


def test_diff_frame_keeps_its_columns_and_writes_values_as_a_config_file_would():
    changes = config_diff(ParameterConfig(), ParameterConfig(cache_max_items=500_000, delta_accept=0.08))
    frame = cv.diff_frame(changes)
    assert tuple(frame.columns) == cv.DIFF_COLUMNS
    rows = {r["parameter"]: r for r in frame.to_dict("records")}
    assert rows["cache_max_items"]["to"] == "500000" and rows["cache_max_items"]["bounds"] == "100 – 1000000"
    assert rows["delta_accept"]["change"] == "+0.02"  # not +0.020000000000000004
    assert cv.diff_frame([]).empty and tuple(cv.diff_frame([]).columns) == cv.DIFF_COLUMNS


def test_params_frame_lists_every_parameter_grouped_with_default_and_bounds():
    frame = cv.params_frame(LIVE)
    assert tuple(frame.columns) == cv.PARAMS_COLUMNS
    assert frame["parameter"].tolist() == [s.name for s in PARAMETER_SPECS]
    groups = frame["group"].tolist()
    assert groups == sorted(groups, key=lambda g: groups.index(g))  # each group's rows together
    row = frame.set_index("parameter").loc["max_iterations"]
    assert (row["value"], row["default"], row["vs default"], row["bounds"]) == ("30", "20", "changed", "1 – 100")
    assert frame["vs default"].tolist().count("changed") == 1
    assert cv.changed_from_defaults(LIVE) == 1 and cv.changed_from_defaults(ParameterConfig()) == 0


def test_live_origin_says_defaults_or_which_run_promoted_it():
    assert "defaults" in cv.live_origin(None)
    text = cv.live_origin({"hash": "abc", "run_id": 3, "actor": "console:alice", "at": 0.0})
    assert text == "promoted by run 3 · by console:alice · 1970-01-01 00:00 UTC"
    assert "time unknown" in cv.live_origin({"hash": "abc", "run_id": 3, "actor": "worker"})


def test_candidate_origin_names_who_when_and_from_where():
    info = {"source": "tuning study 2", "actor": "console:bob", "at": 60.0, "path": "/d/configs/s2.json"}
    assert cv.candidate_origin(info) == (
        "handed over by console:bob on 1970-01-01 00:01 UTC · source: tuning study 2 · file /d/configs/s2.json"
    )


def test_history_frame_reads_without_raw_values():
    past = ParameterConfig(max_iterations=25)
    entries = [
        LiveConfigEntry(LIVE.hash(), LIVE, 5, "console:bob", 120.0, past.hash(), True),
        LiveConfigEntry(past.hash(), past, 3, "console:alice", 60.0, DEFAULT_HASH, False),
        LiveConfigEntry("0123456789ab", None, None, "", None, None, False),
    ]
    frame = cv.history_frame(entries, LIVE)
    assert tuple(frame.columns) == cv.HISTORY_COLUMNS
    rows = frame.to_dict("records")
    assert rows[0]["config"] == f"{LIVE.hash()} (live now)"
    assert rows[0]["against the live config now"] == "identical to the live config"
    assert rows[1]["run"] == "run 3" and rows[1]["by"] == "console:alice"
    assert rows[1]["became live (UTC)"] == "1970-01-01 00:01"
    assert rows[1]["replaced"] == f"defaults ({DEFAULT_HASH})"
    assert rows[1]["against the live config now"] == "1 parameter differs from the live config"
    assert rows[2]["against the live config now"] == cv.NOT_RECORDED
    assert rows[2]["run"] == rows[2]["by"] == rows[2]["replaced"] == rows[2]["became live (UTC)"] == "—"
    assert not [t for t in texts_of(frame) if t in RAW]


def test_saved_frame_shows_valid_files_against_live_and_invalid_ones_with_their_problem():
    saved = [
        SavedConfig(Path("/d/configs/a.json"), None, "expected a JSON object", None),
        SavedConfig(Path("/d/configs/b.json"), LIVE, None, 0.0),
        SavedConfig(Path("/d/configs/c.json"), ParameterConfig(), None, 0.0),
    ]
    frame = cv.saved_frame(saved, LIVE)
    assert tuple(frame.columns) == cv.SAVED_COLUMNS
    rows = frame.to_dict("records")
    assert rows[0] == {
        "file": "a.json",
        "config": "not a valid config",
        "modified (UTC)": "—",
        "against the live config": "expected a JSON object",
    }
    assert rows[1]["config"] == LIVE.hash() and rows[1]["against the live config"] == "identical to the live config"
    assert rows[2]["against the live config"] == "1 parameter differs from the live config"
    assert not [t for t in texts_of(frame) if t in RAW]


def test_config_download_is_a_loadable_file_with_a_sortable_name(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(cv.config_json(LIVE))
    assert ParameterConfig.load(path) == LIVE
    assert cv.config_file_name("live", LIVE, now=0) == f"discovery-config-live-{LIVE.hash()}-19700101-0000.json"


def test_config_label_and_when():
    assert cv.config_label(DEFAULT_HASH) == f"defaults ({DEFAULT_HASH})"
    assert cv.config_label("abc") == "abc" and cv.config_label(None) == "—"
    assert cv.when(None) == "—" and cv.when(0.0) == "1970-01-01 00:00 UTC"
