"""The live-config history, saved config files and "how does this config relate to live"
(engine.core.configs), against a real ops database and data dir."""

from __future__ import annotations

import json

import pytest

from engine.core import configs
from engine.core.access import Role
from engine.core.configs import (
    LIVE_CONFIG_ACTION,
    LIVE_CONFIG_KEY,
    describe_vs_live,
    live_config,
    live_config_history,
    live_config_info,
    saved_configs,
    set_candidate,
    set_live_config,
)
from engine.core.params import ParameterConfig
from tests.support.actors import ADMIN, as_role

DEFAULT_HASH = ParameterConfig().hash()


def promote(ops, cfg: ParameterConfig, run_id: int, actor: str, at: float) -> None:
    """What the rollout does when a run's last stage is promoted."""
    with ops.transaction() as db:
        set_live_config(ops, db, cfg, run_id=run_id, actor=as_role(Role.APPROVER, key=actor), at=at)


def test_no_promotion_no_history(ops):
    assert live_config_history(ops) == []


def test_two_promotions_give_two_entries_newest_first(ops):
    first = ParameterConfig(max_iterations=30)
    second = ParameterConfig(max_iterations=30, delta_accept=0.08)
    promote(ops, first, 3, "alice@example.com", 1_000.0)
    promote(ops, second, 5, "bob@example.com", 2_000.0)

    history = live_config_history(ops)
    assert [e.hash for e in history] == [second.hash(), first.hash()]
    assert [e.run_id for e in history] == [5, 3]
    assert [e.actor for e in history] == ["bob@example.com", "alice@example.com"]
    assert [e.at for e in history] == [2_000.0, 1_000.0]
    assert [e.config for e in history] == [second, first]
    assert [e.replaced for e in history] == [first.hash(), DEFAULT_HASH]
    assert [e.current for e in history] == [True, False]
    assert history[0].to_dict()["params"] == second.to_dict()
    # what was live is unchanged by the history: the setting and the reader agree
    assert live_config(ops) == second and live_config_info(ops)["run_id"] == 5


def test_promoting_the_same_config_again_is_listed_again(ops):
    cfg = ParameterConfig(max_iterations=30)
    promote(ops, cfg, 1, "worker", 1.0)
    promote(ops, cfg, 2, "worker", 2.0)
    history = live_config_history(ops)
    assert [(e.run_id, e.replaced) for e in history] == [(2, cfg.hash()), (1, DEFAULT_HASH)]


def test_old_data_dir_with_only_the_current_live_config(ops):
    """A data dir from before the history: the setting holds the live config, audit rows only run ids."""
    old = ParameterConfig(max_iterations=25)
    live = ParameterConfig(max_iterations=40)
    with ops.transaction() as db:
        ops.audit("console:ann", LIVE_CONFIG_ACTION, old.hash(), {"run_id": 1}, db=db)
        ops.audit("console:ben", LIVE_CONFIG_ACTION, live.hash(), {"run_id": 2}, db=db)
        info = {"hash": live.hash(), "run_id": 2, "actor": "console:ben", "at": 50.0, "params": live.to_dict()}
        ops.set_setting(LIVE_CONFIG_KEY, info, db=db)

    history = live_config_history(ops)
    assert [e.hash for e in history] == [live.hash(), old.hash()]
    assert history[0].config == live  # from the setting
    assert history[1].config is None  # its values were never kept
    assert [e.replaced for e in history] == [old.hash(), DEFAULT_HASH]
    assert [e.run_id for e in history] == [2, 1]
    assert all(e.at is not None for e in history)  # the audit row's time when the detail has none


def test_live_setting_without_any_audit_row_is_still_listed(ops):
    live = ParameterConfig(max_iterations=40)
    info = {"hash": live.hash(), "run_id": 9, "actor": "worker", "at": 7.0, "params": live.to_dict()}
    ops.set_setting(LIVE_CONFIG_KEY, info)
    (entry,) = live_config_history(ops)
    assert (entry.hash, entry.config, entry.run_id, entry.actor, entry.at) == (live.hash(), live, 9, "worker", 7.0)
    assert entry.replaced is None and entry.current


def test_saved_configs_lists_valid_and_invalid_files_without_raising(settings):
    folder = configs.configs_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    good = ParameterConfig(max_iterations=30).save(folder / "b-tuned.json")
    (folder / "a-broken.json").write_text("{not json", encoding="utf-8")
    (folder / "c-out-of-range.json").write_text(json.dumps({"max_iterations": 1000}), encoding="utf-8")
    (folder / "d-unknown.json").write_text(json.dumps({"no_such_param": 1}), encoding="utf-8")
    (folder / "e-binary.json").write_bytes(b"\xff\xfe\x00")
    (folder / "notes.txt").write_text("not a config", encoding="utf-8")
    (folder / "f-dir.json").mkdir()

    saved = saved_configs(settings)
    assert [s.name for s in saved] == [
        "a-broken.json",
        "b-tuned.json",
        "c-out-of-range.json",
        "d-unknown.json",
        "e-binary.json",
        "f-dir.json",
    ]
    by_name = {s.name: s for s in saved}
    assert by_name["b-tuned.json"].valid and by_name["b-tuned.json"].problem is None
    assert by_name["b-tuned.json"].hash == ParameterConfig(max_iterations=30).hash()
    assert by_name["b-tuned.json"].path == good
    for name in ("a-broken.json", "c-out-of-range.json", "d-unknown.json", "e-binary.json", "f-dir.json"):
        entry = by_name[name]
        assert not entry.valid and entry.hash is None
        assert entry.problem and "\n" not in entry.problem, (name, entry.problem)
    assert "max_iterations" in by_name["c-out-of-range.json"].problem
    assert "no_such_param" in by_name["d-unknown.json"].problem
    assert str(folder) not in by_name["c-out-of-range.json"].problem  # the listing already names the file


def test_saved_configs_without_the_folder(settings, tmp_path):
    assert saved_configs(settings.with_data_dir(tmp_path / "nowhere")) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (ParameterConfig(), "identical to the live config"),
        (ParameterConfig(max_iterations=30), "1 parameter differs from the live config"),
        (
            ParameterConfig(max_iterations=30, delta_accept=0.08, max_depth=2),
            "3 parameters differ from the live config",
        ),
    ],
)
def test_describe_vs_live(config, expected):
    assert describe_vs_live(config, ParameterConfig()) == expected


def test_candidate_and_history_are_independent(ops, tmp_path):
    path = ParameterConfig(max_iterations=30).save(tmp_path / "cand.json")
    set_candidate(ops, path, as_role(Role.APPROVER, key="alice@example.com"), source="tuning study 2")
    assert live_config_history(ops) == []  # handing over does not make anything live


def test_a_promotion_that_rolls_back_leaves_no_history(ops):
    """The history row is written in the promotion's own transaction: no live config, no entry, and back."""
    promote(ops, ParameterConfig(max_iterations=30), 1, "worker", 1.0)
    with pytest.raises(RuntimeError), ops.transaction() as db:
        set_live_config(ops, db, ParameterConfig(max_iterations=40), run_id=2, actor=ADMIN, at=2.0)
        raise RuntimeError("the promotion failed after making the config live")
    assert [e.run_id for e in live_config_history(ops)] == [1]
    assert live_config(ops) == ParameterConfig(max_iterations=30)
