"""Starting a rollout safely: a candidate identical to the live config is refused, a later start records the
stages it skips (and the CLI prints them), a handed-over candidate that went live is consumed, and a run that
ended before the last stage continues at the next one with the same candidate."""

from __future__ import annotations

import io

import pytest

from engine import rollout as ro
from engine.cli.main import main
from engine.core.errors import ConfigError
from engine.core.params import ParameterConfig
from tests.support.actors import ADMIN, as_role
from tests.support.rollouts import SAME_DISCOVERY, candidate_file, hand_over_candidate, run_here
from tests.support.stages import stage_table


@pytest.fixture
def seeded(seed_graph):
    return seed_graph(40, 3)


def test_a_live_rollout_of_the_live_config_is_refused_in_one_line_and_a_dry_run_is_not(settings, ops, seeded, tmp_path):
    stages = stage_table(tmp_path)
    with pytest.raises(ConfigError, match="identical to the live config") as err:
        ro.start_rollout(settings, ops, stage="pilot", stages_file=stages, launch=False, graph=seeded, actor=ADMIN)
    assert "\n" not in str(err.value) and "dry run" in str(err.value)
    assert ro.list_runs(ops) == []
    same = ParameterConfig().save(tmp_path / "same.json")
    with pytest.raises(ConfigError, match="identical to the live config"):
        ro.start_rollout(
            settings, ops, stage="pilot", config_file=same, stages_file=stages, launch=False, graph=seeded, actor=ADMIN
        )
    # a handed-over candidate does not hide the live config from a caller who asks for it
    hand_over_candidate(ops, tmp_path)
    with pytest.raises(ConfigError, match="identical to the live config"):
        ro.start_rollout(
            settings,
            ops,
            stage="pilot",
            use_live_config=True,
            stages_file=stages,
            launch=False,
            graph=seeded,
            actor=ADMIN,
        )
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="pilot",
        use_live_config=True,
        dry_run=True,
        stages_file=stages,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    assert ro.rollout_status(ops, run_id).run.candidate_hash == ParameterConfig().hash()


def test_a_later_start_records_the_stages_it_skips_and_who(settings, ops, seeded, tmp_path):
    run_id = ro.start_rollout(
        settings,
        ops,
        stage="limited",
        entities=30,
        config_file=candidate_file(tmp_path),
        stages_file=stage_table(tmp_path),
        actor=as_role("operator", "console:alice"),
        launch=False,
        graph=seeded,
    )
    run = ro.rollout_status(ops, run_id).run
    assert run.skipped_stages == ("pilot",) and run.next_stage == "production"
    [start] = [d for d in ro.decision_records(ops, run_id) if d.gate == "start"]
    assert start.actor == "console:alice" and start.record["skipped_stages"] == ["pilot"]
    assert start.reason == "started by console:alice: limited; pilot skipped at the start"
    assert ro.recompute_decision(ops, start.id) == (None, True)
    assert ro.skipped_stages(["pilot", "limited", "production"], "all") == []
    assert ro.skipped_stages(["pilot", "limited", "production"], "production") == ["pilot", "limited"]
    ro.cancel(ops, run_id, ADMIN)


def test_continue_runs_the_next_stage_with_the_same_candidate_and_a_live_candidate_is_consumed(
    settings, ops, seeded, tmp_path
):
    stages = stage_table(tmp_path, counts=(10, 20, "all"), loose_triggers=True)
    tuned = SAME_DISCOVERY.with_changes(cache_max_items=5000)
    hand_over_candidate(ops, tmp_path, tuned)
    pilot = ro.start_rollout(
        settings, ops, stage="pilot", stages_file=stages, time_scale=86400 * 4, launch=False, graph=seeded, actor=ADMIN
    )
    status = run_here(settings, ops, pilot)
    assert status.state == "completed" and status.run.next_stage == "limited"
    assert ro.live_config(ops) == ParameterConfig()  # a pilot-only run changes nothing live
    nxt = ro.start_rollout(
        settings,
        ops,
        stage="limited",
        from_run=pilot,
        stages_file=stages,
        time_scale=86400 * 4,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    run = ro.rollout_status(ops, nxt).run
    assert run.candidate_hash == tuned.hash() and run.skipped_stages == ("pilot",)
    [start] = [d for d in ro.decision_records(ops, nxt) if d.gate == "start"]
    assert f"pilot passed in rollout {pilot}" in start.reason
    status = run_here(settings, ops, nxt)
    assert status.stage("limited").done == 10  # the pilot's ten already run the candidate: ten more
    last = ro.start_rollout(
        settings,
        ops,
        stage="production",
        from_run=nxt,
        stages_file=stages,
        time_scale=86400 * 4,
        launch=False,
        graph=seeded,
        actor=ADMIN,
    )
    status = run_here(settings, ops, last)
    assert status.state == "completed" and ro.live_config(ops) == tuned
    # the handed-over candidate is live now: a start without a file has nothing new to roll out
    with pytest.raises(ConfigError, match="identical to the live config"):
        ro.start_rollout(settings, ops, stage="pilot", stages_file=stages, launch=False, graph=seeded, actor=ADMIN)


def test_the_cli_prints_the_stages_a_later_start_skips(settings, seed_graph, tmp_path, monkeypatch, capsys):
    seed_graph(40, 3)
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DISCOVERY_GRAPH", settings.graph_name)
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    stages = stage_table(tmp_path, counts=(10, 20, "all"), loose_triggers=True)
    argv = ["rollout", "--stage", "limited", "--entities", "50", "--stages-file", str(stages), "--wait"]
    code = main([*argv, "--config-file", str(candidate_file(tmp_path)), "--dry-run", "--time-scale", "400000"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "skipped stages: pilot (not run before limited" in out
