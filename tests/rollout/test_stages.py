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
    text = str(e.value)
    assert "\n" not in text and text.startswith("x.json: invalid stage config, 5 problems: ")
    lines = text.split(": ", 2)[2].split("; ")
    assert len(lines) == 5
    assert any(
        "stages[0] (pilot).min_duration_days: got -1 (allowed: a number from 0 to 3,650)" in line for line in lines
    )
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
    with pytest.raises(ConfigError, match="pass --stages-file with an existing file"):
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


def _set(raw: dict, path: tuple, value) -> dict:
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


BIG = 10**300  # an integer of 301 digits: too long for a float


@pytest.mark.parametrize(
    "path, value, says",
    [
        (("stages", 0, "rollback", 0, "threshold"), float("nan"), "stages[0] (pilot).rollback[0].threshold: got nan"),
        (("stages", 0, "rollback", 1, "threshold"), float("inf"), "stages[0] (pilot).rollback[1].threshold: got inf"),
        (("stages", 1, "success", 2, "threshold"), BIG, "(limited).success[2].threshold: got an integer of 301 digits"),
        (
            ("stages", 2, "rollback", 1, "threshold"),
            101,
            "(production).rollback[1].threshold: got 101 (allowed: a number from 0 to 100)",
        ),
        (
            ("stages", 1, "confidence"),
            float("nan"),
            "stages[1] (limited).confidence: got nan (allowed: a number from 0.5",
        ),
        (
            ("stages", 1, "confidence"),
            1.0,
            "stages[1] (limited).confidence: got 1.0 (allowed: a number from 0.5 to 0.999)",
        ),
        (("confidence",), float("-inf"), "confidence: got -inf"),
        (
            ("stages", 0, "bootstrap_resamples"),
            1e12,
            "(pilot).bootstrap_resamples: got 1000000000000.0 (allowed: a whole number from 100 to 100,000)",
        ),
        (("bootstrap_resamples",), 2000.5, "bootstrap_resamples: got 2000.5 (allowed: a whole number"),
        (("time_scale",), float("nan"), "time_scale: got nan (allowed: a number > 0 and <= 1,000,000,000)"),
        (("time_scale",), 0, "time_scale: got 0 (allowed: a number > 0"),
        (
            ("seed",),
            BIG,
            "seed: got an integer of 301 digits (allowed: a whole number from 0 to 9,223,372,036,854,775,807)",
        ),
        (
            ("stages", 0, "entities"),
            True,
            "stages[0] (pilot).entities: got True (allowed: a whole number from 1 to 10,000,000)",
        ),
        (("stages", 0, "entities"), 1e12, "stages[0] (pilot).entities: got 1000000000000.0"),
        (("stages", 1, "entities"), 20.5, "stages[1] (limited).entities: got 20.5"),
        (
            ("stages", 0, "min_duration_days"),
            float("inf"),
            "(pilot).min_duration_days: got inf (allowed: a number from 0 to 3,650)",
        ),
        (
            ("stages", 0, "batch_size"),
            BIG,
            "(pilot).batch_size: got an integer of 301 digits (allowed: a whole number from 1 to 100,000)",
        ),
        (("stages", 2, "min_sample"), "100", "(production).min_sample: got '100' (allowed: a whole number"),
        (
            ("stages", 0, "shadow_fraction"),
            float("nan"),
            "(pilot).shadow_fraction: got nan (allowed: a number > 0 and <= 1)",
        ),
        (
            ("stages", 0, "success", 0, "metric"),
            ["cost"],
            "stages[0] (pilot).success[0].metric: ['cost'] is not one of",
        ),
    ],
)
def test_case_5_every_number_is_finite_and_in_range_with_a_one_line_error(path, value, says):
    """case 5: a NaN trigger threshold (which would show `> nan ... passed`, the trigger silently off), a NaN
    confidence, 1e12 bootstrap resamples, a NaN time scale, counts that are floats, bools or of hundreds of digits:
    one line naming the stage, the field, the value and the allowed range."""
    with pytest.raises(ConfigError) as e:
        parse_stage_config(_set(_raw(), path, value), source="s.json")
    message = str(e.value)
    assert "\n" not in message and message.startswith("s.json: invalid stage config: "), message
    assert says in message, message


def test_case_5_the_shipped_bounds_are_generous_for_real_use():
    """The bounds refuse only values no real table has: the extremes themselves are accepted."""
    raw = _raw()
    raw.update(time_scale=1e9, confidence=0.999, bootstrap_resamples=100_000, seed=2**63 - 1)
    raw["stages"][0].update(entities=10, batch_size=100_000, min_duration_days=3650, shadow_fraction=1e-9)
    raw["stages"][1]["rollback"][0]["threshold"] = -1_000_000
    raw["stages"][2]["rollback"][2]["threshold"] = 86_400_000
    cfg = parse_stage_config(raw)
    assert cfg.time_scale == 1e9 and cfg.seed == 2**63 - 1 and cfg.stages[0].batch_size == 100_000


@pytest.mark.parametrize("time_scale", [float("nan"), float("inf"), 0, -1, 1e10, True, "86400"])
def test_case_9_a_time_scale_from_outside_the_file_is_checked_alike(time_scale):
    """case 9: `--time-scale inf` gave a misleading 'audit details ... not JSON-able'; now it says what is allowed."""
    with pytest.raises(ConfigError, match=r"time scale: got .* \(allowed: a number > 0 and <= 1,000,000,000\)"):
        load_stage_config().with_time_scale(time_scale)


@pytest.mark.parametrize(
    "content, says",
    [
        (None, "is a directory, not a file"),
        (b'{"stages": [}', "is not valid JSON"),
        ('{"name": "pil\u00f6t"}'.encode("latin-1"), "is not UTF-8 text (byte 0xf6 at offset 13): save it as UTF-8"),
        (('{"seed": ' + "9" * 5000 + "}").encode(), "holds a number with thousands of digits"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["directory", "bad-json", "latin-1", "5000-digits", "deep"],
)
def test_case_9_a_stage_file_that_cannot_be_read_is_one_line(tmp_path, content, says):
    """case 9: a stage table that is a directory, not UTF-8 or holds a number too long to parse: one line."""
    path = tmp_path / "stages.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_stage_config(path)
    assert "\n" not in str(e.value) and f"stage table {path} " in str(e.value) and says in str(e.value)
