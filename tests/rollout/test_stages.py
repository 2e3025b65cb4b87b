"""Stage config: the shipped table matches the issue, and every bad field is reported on its own line."""

from __future__ import annotations

import json

import pytest

from engine.core.errors import ConfigError
from engine.rollout.stages import DEFAULT_STAGES_FILE, Check, Metric, StagePolicy, load_stage_config, parse_stage_config


def _raw() -> dict:
    return json.loads(DEFAULT_STAGES_FILE.read_text())


def test_shipped_table_has_the_issue_defaults():
    cfg = load_stage_config()
    assert cfg.names() == ["pilot", "limited", "production"]
    pilot, limited, prod = cfg.stages
    assert (pilot.entities, limited.entities, prod.entities) == (10, 100, None)
    assert (pilot.min_duration_days, limited.min_duration_days, prod.min_duration_days) == (3, 7, 30)
    s = {(c.metric, c.op): c.threshold for c in limited.success}
    assert s == {
        (Metric.COST_REDUCTION_PCT, ">="): 20,
        (Metric.ACTIONABLE_INCREASE_PCT, ">="): 80,
        (Metric.P95_LATENCY_MS, "<"): 500,
    }
    r = {(c.metric, c.op): c.threshold for c in prod.rollback}
    assert r == {
        (Metric.COST_INCREASE_PCT, ">"): 15,
        (Metric.ERROR_RATE_PCT, ">"): 10,
        (Metric.P95_LATENCY_MS, ">"): 1500,
    }
    assert all(c.test is Check.POINT for c in prod.rollback)
    assert all(c.test is Check.BOUND for c in prod.success)


def test_every_bad_field_is_one_line():
    raw = _raw()
    raw["stages"][0]["min_duration_days"] = -1
    raw["stages"][1]["entities"] = 5  # not cumulative
    raw["stages"][2]["success"][0]["metric"] = "speed"
    raw["stages"][2]["rollback"][0]["op"] = "=="
    raw["bogus"] = 1
    with pytest.raises(ConfigError) as e:
        parse_stage_config(raw, source="x.json")
    lines = str(e.value).splitlines()[1:]
    assert len(lines) == 5
    assert any("stages[0] (pilot).min_duration_days: must be >= 0" in line for line in lines)
    assert any("stages[1] (limited).entities: exposure is cumulative" in line for line in lines)
    assert any("stages[2] (production).success[0].metric: 'speed'" in line for line in lines)
    assert any("rollback[0].op: '=='" in line for line in lines)
    assert any("unknown top-level field(s) ['bogus']" in line for line in lines)


def test_all_only_on_the_last_stage_and_names_unique():
    raw = _raw()
    raw["stages"][0]["entities"] = "all"
    raw["stages"][2]["name"] = "limited"
    with pytest.raises(ConfigError) as e:
        parse_stage_config(raw)
    msg = str(e.value)
    assert "only the last stage may expose 'all'" in msg and "duplicate stage name 'limited'" in msg


def test_missing_file_and_bad_json_say_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="--config-file"):
        load_stage_config(tmp_path / "nope.json")
    p = tmp_path / "bad.json"
    p.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_stage_config(p)


def test_policy_round_trips_through_a_dict():
    cfg = load_stage_config()
    for s in cfg.stages:
        assert StagePolicy.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_time_scale_must_be_positive():
    cfg = load_stage_config()
    assert cfg.with_time_scale(86400).time_scale == 86400
    with pytest.raises(ConfigError, match="time scale"):
        cfg.with_time_scale(0)


def test_unknown_stage_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"\['pilot', 'limited', 'production'\]"):
        load_stage_config().stage("canary")
