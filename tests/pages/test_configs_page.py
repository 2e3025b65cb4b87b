"""AppTest of the Configs page: the live config, the handed-over candidate with its diff against live,
past live configs and the saved config files, with configs made live the way a rollout makes them."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

from console.configs_view import DIFF_COLUMNS, HISTORY_COLUMNS, PARAMS_COLUMNS, SAVED_COLUMNS
from console.text import md_escape
from engine.core.access import Role
from engine.core.configs import configs_dir, set_candidate, set_live_config
from engine.core.params import PARAMETER_SPECS, ParameterConfig
from engine.store.opsdb import open_ops_db
from tests.support.actors import as_role
from tests.support.console_env import as_shown

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
TIMEOUT = 60  # seconds per script run: the first one imports altair/pandas and connects
RAW = ("None", "nan", "NaN", "inf", "Infinity")
PIXEL = "![pixel](http://127.0.0.1:9/track.png)"


def run_configs() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/configs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def tables(at: AppTest, columns) -> list:
    return [d.value for d in at.dataframe if tuple(d.value.columns) == tuple(columns)]


def summary(at: AppTest) -> str:
    """The page's one-line summary under the title (live, candidate, counts), as a person reads it."""
    found = [as_shown(m.value) for m in at.markdown if m.value.startswith("**Live**")]
    assert len(found) == 1, [m.value for m in at.markdown]
    return found[0]


def promote(ops, cfg: ParameterConfig, run_id: int, actor: str, at: float) -> None:
    """What the rollout does when the last stage of a run is promoted: inside one transaction."""
    with ops.transaction() as db:
        set_live_config(ops, db, cfg, run_id=run_id, actor=as_role(Role.APPROVER, key=actor), at=at)


def test_a_fresh_data_dir_runs_the_defaults_and_has_nothing_handed_over(console_env):
    at = run_configs()
    assert at.title[0].value == "Configs"
    assert summary(at) == (
        f"**Live** `{ParameterConfig().hash()}` · **candidate** none handed over · **0** past live configs · "
        "**0** saved files"
    )
    (params,) = tables(at, PARAMS_COLUMNS)
    assert params["parameter"].tolist() == [s.name for s in PARAMETER_SPECS]
    assert (params["value"] == params["default"]).all()
    infos = [i.value for i in at.info]
    assert any(i.startswith("No candidate handed over") for i in infos)
    assert any("No rollout has made a config live yet" in i for i in infos)
    assert any("no rollout has made a config live yet" in as_shown(m.value) for m in at.markdown)


def test_live_candidate_history_and_saved_files(console_env):
    ops = open_ops_db(console_env)
    first = ParameterConfig(max_iterations=25)
    live = ParameterConfig(max_iterations=30, delta_accept=0.08)
    promote(ops, first, 3, "alice@example.com", 1_000.0)
    promote(ops, live, 5, "bob@example.com", 2_000.0)
    folder = configs_dir(console_env)
    folder.mkdir(parents=True, exist_ok=True)
    candidate = live.with_changes(max_depth=2, stop_confidence=0.9)
    path = candidate.save(folder / "study-2-best.json")
    set_candidate(ops, path, as_role(Role.APPROVER, key=f"console:Mallory {PIXEL}"), source=f"tuning study {PIXEL}")
    (folder / "broken.json").write_text(json.dumps({"max_iterations": 1000}), encoding="utf-8")

    at = run_configs()
    assert summary(at) == (
        f"**Live** `{live.hash()}` · **candidate** `{candidate.hash()}` (2 parameters differ from the live config) · "
        "**1** past live config · **2** saved files"
    )
    assert any("promoted by run 5 · by bob@example.com" in as_shown(m.value) for m in at.markdown)

    # the candidate's diff against live: only what changes, from the live value to the candidate's
    diffs = tables(at, DIFF_COLUMNS)
    cand_diff = next(d for d in diffs if set(d["parameter"]) == {"max_depth", "stop_confidence"})
    row = cand_diff.set_index("parameter").loc["max_depth"]
    assert (row["from"], row["to"], row["change"], row["default"], row["bounds"]) == ("3", "2", "-1", "3", "1 – 3")
    assert any("2 parameters differ from the live config" in as_shown(c.value) for c in at.caption)

    # past live configs, newest first, with when and by whom
    (history,) = tables(at, HISTORY_COLUMNS)
    assert history["by"].tolist() == ["bob@example.com", "alice@example.com"]
    assert history["run"].tolist() == ["run 5", "run 3"]
    assert history["config"].tolist() == [f"{live.hash()} (live now)", first.hash()]
    assert history["became live (UTC)"].tolist() == ["1970-01-01 00:33", "1970-01-01 00:16"]
    assert history["against the live config now"].tolist() == [
        "identical to the live config",
        "2 parameters differ from the live config",
    ]
    # the past config's expander holds its diff: live now -> that config
    past_diff = next(d for d in diffs if set(d["parameter"]) == {"max_iterations", "delta_accept"})
    assert past_diff.set_index("parameter").loc["max_iterations", "from"] == "30"
    assert past_diff.set_index("parameter").loc["max_iterations", "to"] == "25"
    assert any(first.hash() in e.label and "by alice@example.com" in as_shown(e.label) for e in at.expander)

    # saved files: the candidate's file against live, the broken one with its problem
    (saved,) = tables(at, SAVED_COLUMNS)
    rows = saved.set_index("file")
    assert rows.loc["study-2-best.json", "config"] == candidate.hash()
    assert rows.loc["broken.json", "config"] == "not a valid config"
    assert "max_iterations" in rows.loc["broken.json", "against the live config"]
    assert any("max_iterations" in as_shown(e.value) for e in at.error)

    # downloads named by what they hold; no raw values in any table
    names = [MessageToDict(b.proto).get("label") for b in at.get("download_button")]
    assert "Download the live config (JSON)" in names and "Download the candidate (JSON)" in names
    for frame in (*diffs, history, saved):
        assert not [v for v in frame.to_numpy().ravel() if str(v) in RAW]

    # the operator and source of the handover are stored text: shown escaped, never as an image
    markdown = [m.value for m in at.markdown]
    assert any(md_escape(f"console:Mallory {PIXEL}") in m for m in markdown)
    assert not any(PIXEL in m for m in markdown)


def test_a_candidate_identical_to_live_is_called_out(console_env, tmp_path):
    ops = open_ops_db(console_env)
    live = ParameterConfig(max_iterations=30)
    promote(ops, live, 7, "carol@example.com", 3_000.0)
    set_candidate(
        ops, live.save(tmp_path / "same.json"), as_role(Role.APPROVER, key="carol@example.com"), source="file"
    )
    at = run_configs()
    assert any("identical to the live config" in w.value for w in at.warning)


def test_stored_and_file_names_are_shown_as_text(console_env):
    """Actors, sources, paths and file names come from stores and the disk: escaped wherever Markdown is read."""
    from tests.pages.test_markdown_data_pages import BARE_CONSTRUCT, markdown_texts
    from tests.support.console_env import DIRECTIVES, SCRIPT_LINK

    ops = open_ops_db(console_env)
    actor = f"console:Mallory {PIXEL} {DIRECTIVES}"
    promote(ops, ParameterConfig(max_iterations=25), 1, actor, 1_000.0)
    promote(ops, ParameterConfig(max_iterations=30), 2, actor, 2_000.0)
    folder = configs_dir(console_env)
    folder.mkdir(parents=True, exist_ok=True)
    evil = f"evil {DIRECTIVES} {SCRIPT_LINK}.json"
    path = ParameterConfig(max_depth=2).save(folder / evil)
    set_candidate(ops, path, as_role(Role.APPROVER, key=actor), source=f"tuning {SCRIPT_LINK} {DIRECTIVES}")
    (folder / f"broken {SCRIPT_LINK}.json").write_text("{", encoding="utf-8")

    at = run_configs()
    texts = markdown_texts(at)
    assert [t for t in texts if BARE_CONSTRUCT.search(t[2])] == []
    for shown in (actor, evil, f"tuning {SCRIPT_LINK} {DIRECTIVES}"):
        assert any(md_escape(shown) in t[2] for t in texts), shown
