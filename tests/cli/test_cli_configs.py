"""`python -m engine config show|history|diff` against a real data dir, in-process."""

from __future__ import annotations

import json

import pytest

from engine.cli.main import main
from engine.core.access import Role
from engine.core.configs import configs_dir, set_candidate, set_live_config
from engine.core.params import ParameterConfig
from engine.store.opsdb import open_ops_db
from tests.support.actors import as_role

FIRST = ParameterConfig(max_iterations=30)
LIVE = ParameterConfig(max_iterations=30, delta_accept=0.08)
CANDIDATE = LIVE.with_changes(cache_max_items=500_000)


@pytest.fixture
def data_dir(settings, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    return settings


@pytest.fixture
def promoted(data_dir):
    """Two promotions as the rollout makes them, a handed-over candidate and a broken saved file."""
    ops = open_ops_db(data_dir)
    for run_id, cfg, actor, at in ((2, FIRST, "alice@example.com", 1.70e9), (4, LIVE, "bob@example.com", 1.71e9)):
        with ops.transaction() as db:
            set_live_config(ops, db, cfg, run_id=run_id, actor=as_role(Role.APPROVER, key=actor), at=at)
    folder = configs_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    set_candidate(
        ops, CANDIDATE.save(folder / "study-1-best.json"), as_role(Role.APPROVER, key="cli:me"), source="tuning study 1"
    )
    (folder / "bad.json").write_text(json.dumps({"max_depth": 9}), encoding="utf-8")
    return data_dir


def test_show_on_a_fresh_data_dir(data_dir, capsys):
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert f"live config {ParameterConfig().hash()}: the defaults" in out
    assert "every parameter at its default" in out
    assert "candidate: none handed over" in out
    assert main(["config", "history"]) == 0
    assert "no config has become live yet" in capsys.readouterr().out


def test_show_lists_live_candidate_diff_and_saved_files(promoted, capsys):
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert f"live config {LIVE.hash()}: promoted by run 4 · by bob@example.com" in out
    assert "delta_accept" in out and "max_iterations" in out and "value_csuite" not in out
    assert f"candidate {CANDIDATE.hash()}: handed over by cli:me" in out
    assert "cache_max_items  cache       20000 -> 500000" in out
    assert "bad.json  not a valid config" in out and "max_depth" in out
    assert main(["config", "show", "--all"]) == 0
    assert "value_csuite" in capsys.readouterr().out
    assert main(["config", "show", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["live"]["hash"] == LIVE.hash()
    assert [c["name"] for c in data["candidate"]["diff_vs_live"]] == ["cache_max_items"]


def test_history_newest_first(promoted, capsys):
    assert main(["config", "history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("2024-03-09 16:00 UTC") and f"{LIVE.hash()} (live now)" in lines[0]
    assert "run 4" in lines[0] and "by bob@example.com" in lines[0] and f"replaced {FIRST.hash()}" in lines[0]
    assert "run 2" in lines[1] and f"replaced defaults ({ParameterConfig().hash()})" in lines[1]
    assert main(["config", "history", "--json", "--limit", "1"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["run_id"] == 4 and entry["params"] == LIVE.to_dict()


def test_diff_by_name_and_file(promoted, capsys, tmp_path):
    assert main(["config", "diff", "defaults", "live"]) == 0
    out = capsys.readouterr().out
    assert "2 parameter(s) differ" in out and "0.06 -> 0.08" in out and "20 -> 30" in out
    other = ParameterConfig(max_depth=2).save(tmp_path / "other.json")
    assert main(["config", "diff", "candidate", str(other), "--json"]) == 0
    names = {c["name"] for c in json.loads(capsys.readouterr().out)["changes"]}
    assert names == {"max_iterations", "delta_accept", "cache_max_items", "max_depth"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["config", "diff", "live", "{dir}/configs/bad.json"], "max_depth = 9 is out of range"),
        (["config", "diff", "live", "{dir}/nope.json"], "does not exist"),
        (["config", "history", "--limit", "0"], "--limit"),
    ],
)
def test_bad_input_is_one_line(promoted, capsys, argv, needle):
    assert main([a.replace("{dir}", str(promoted.data_dir)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1


def test_diff_candidate_when_none_was_handed_over(data_dir, capsys):
    assert main(["config", "diff", "live", "candidate"]) == 2
    assert "no candidate handed over" in capsys.readouterr().err
