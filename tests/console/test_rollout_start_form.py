"""console.rollout_start from literals: the Start form's evidence and pace as engine values (bad ones refused in the
engine's one line), the estimate as a table and in words, and a run's source line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from console import rollout_start as rs
from engine.core.errors import ConfigError
from engine.discovery.runs import EvidenceSpec
from engine.rollout.estimate import CostEstimate, CostPerEntity, StageEstimate
from engine.rollout.stages import load_stage_config

URL = "http://127.0.0.1:8000/evaluate"


def estimate(paid: bool = True) -> CostEstimate:
    per = CostPerEntity(0.05, 12, "mean of its config's last 12 runs")
    return CostEstimate(
        "HTTP evaluator " + URL,
        paid,
        per,
        CostPerEntity(0.04, 0, "no run recorded: the per-entity cost cap"),
        (StageEstimate("pilot", 10, 1.0, 0.9), StageEstimate("limited", 90, 0.5, 6.3)),
    )


def test_the_world_is_the_engines_default_and_each_stage_keeps_its_own_pace():
    choice = rs.source_choice(rs.WORLD, url="ignored", in_flight=0)
    assert choice == rs.SourceChoice(None, None, None) and not choice.paid


def test_an_http_choice_is_an_http_spec_with_its_timeout_and_limits():
    choice = rs.source_choice(rs.HTTP, url=f"  {URL} ", timeout_s=12, in_flight=8, max_in_flight=4)
    assert choice.evidence == EvidenceSpec(kind="http", url=URL, timeout_s=12.0)
    assert choice.paid and choice.concurrency == 8
    assert choice.limits is not None and choice.limits.to_dict() == {
        "concurrency": 8,
        "max_hops_per_s": None,
        "max_in_flight": 4,
    }
    hops_only = rs.source_choice(rs.HTTP, url=URL, max_hops_per_s=2.5)
    assert hops_only.concurrency is None and hops_only.limits.max_hops_per_s == 2.5


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"kind": rs.HTTP, "url": ""}, "needs a URL"),
        ({"kind": rs.HTTP, "url": "ftp://host/x"}, "is not an http(s) URL"),
        ({"kind": rs.HTTP, "url": URL, "timeout_s": 0}, "timeout must be a finite number"),
        ({"kind": rs.REPLAY, "replay_path": "  "}, "needs a file"),
        ({"kind": rs.WORLD, "in_flight": 10_000}, "--concurrency must be a whole number from 1 to 256"),
        ({"kind": rs.WORLD, "max_in_flight": 0}, "--max-in-flight must be a whole number"),
    ],
)
def test_a_bad_field_is_the_engines_one_line_error(kwargs, says):
    kind = kwargs.pop("kind")
    with pytest.raises(ConfigError) as err:
        rs.source_choice(kind, **kwargs)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_the_stages_a_start_goes_through_and_their_own_pace():
    config = load_stage_config()
    assert [p.name for p in rs.run_stage_policies(config, "all")] == config.names()
    assert [p.name for p in rs.run_stage_policies(config, "limited")] == ["limited"]
    assert rs.run_stage_policies(config, "nonsense") == []
    assert rs.stage_concurrency_text(config) == "pilot 5, limited 10, production 32"


def test_the_estimate_table_has_a_row_per_stage_and_the_total():
    frame = rs.estimate_frame(estimate())
    assert frame.to_dict("records") == [
        {"stage": "pilot", "entities": "10", "shadow fraction": "100%", "estimated cost": "$0.90"},
        {"stage": "limited", "entities": "90", "shadow fraction": "50%", "estimated cost": "$6.30"},
        {"stage": "total", "entities": "100", "shadow fraction": "", "estimated cost": "$7.20"},
    ]
    assert rs.estimate_frame(estimate().to_dict()).equals(frame)  # what a run stores reads the same


def test_the_estimate_in_words_against_the_budget_and_the_tick_that_names_the_figure():
    above = rs.estimate_summary(estimate(), 5.0)
    assert above.startswith("Estimated cost $7.20: above your $5.00 budget, so Start needs your confirmation.")
    assert "new $0.0500 (mean of its config's last 12 runs)" in above and "old $0.0400 (no run recorded" in above
    assert rs.estimate_summary(estimate(), 25.0).startswith("Estimated cost $7.20: within your $25.00 budget.")
    assert rs.confirm_label(estimate()) == "I confirm the estimated cost of $7.20"


def test_a_runs_source_pace_and_start_estimate_in_one_line_each():
    run = SimpleNamespace(evidence=f"HTTP evaluator {URL}", concurrency=8, limits={"max_hops_per_s": 20.0})
    assert rs.source_text(run) == f"Evidence: HTTP evaluator {URL} · 8 entities in flight, at most 20 hops/s"
    older = SimpleNamespace(evidence="", concurrency=None, limits={})  # a run from before the setting
    assert (
        rs.source_text(older, "pilot 5")
        == "Evidence: simulated world · entities in flight: each stage's setting (pilot 5)"
    )
    assert rs.estimate_text(estimate().to_dict()) == (
        "Estimated at the start: $7.20 (pilot 10 entities $0.90, limited 90 entities $6.30)"
    )
    assert rs.estimate_text(estimate(paid=False).to_dict()).endswith(
        "(this source costs nothing real: what an evaluator would charge)"
    )
    assert rs.estimate_text({}) == ""
