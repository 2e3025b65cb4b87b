"""Every parameter changes behaviour: for each one, a changed value changes a run or a decision.

One row per parameter in ``EFFECTS`` (a test checks the table covers PARAMETER_SPECS, so a new
parameter cannot be added without showing what it does). Each row names the value to change
to and the scenario that exposes it; the test runs the scenario with the default and with the
changed value and asserts the observable differs. The observable of a run is its full trail
(hypothesis, hop type, depth, decision, confidence change per hop), stop reason, actionable
call and final statuses, so "changes a run" means a hop, a decision or a verdict moved.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.cache.lru import HypothesisCache
from engine.catalogue.generator import build_hypotheses, generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.model import Channel, Entity, HopType, Pattern, Template
from engine.core.params import GROUPS, PARAMETER_SPECS, ParameterConfig
from engine.discovery.systems import run_discovery
from engine.discovery.world import SimulatedWorld

NOW = 1_700_000_000.0
DAY = 86400.0
BASE = ParameterConfig()

ENTITIES = generate_catalogue(20, 7)
TEMPLATES = templates_for(ENTITIES, load_templates())
WORLD = SimulatedWorld(1, TEMPLATES, ENTITIES)


def _signature(result):
    return (
        tuple((h.hypothesis_id, h.hop_type, h.depth, h.decision, round(h.delta, 9)) for h in result.hops),
        result.stop_reason,
        result.actionable,
        tuple((o.id, o.status) for o in result.outcomes),
    )


def _run(entity, template, hyps, params, system, world=WORLD, **kw):
    return run_discovery(entity, template, hyps, world, params, system, clock=lambda: NOW, **kw)


# --------------------------------------------------------------------------- scenarios


def catalogue(params: ParameterConfig, system: str = "new"):
    """20 catalogue entities, fresh hypotheses, world seed 1, no cluster confirmations."""
    return [
        _signature(
            _run(
                e,
                TEMPLATES[e.template_id],
                build_hypotheses(e, TEMPLATES[e.template_id], NOW),
                params,
                system,
                cluster_confirmations={},
            )
        )
        for e in ENTITIES
    ]


def old_system(params: ParameterConfig):
    return catalogue(params, "old")


def clustered(params: ParameterConfig):
    """Entities whose cluster (of 10) already confirmed two of their patterns twice each."""
    out = []
    for e in ENTITIES[:15]:
        t = TEMPLATES[e.template_id]
        confirmed = {p.name: 2 for p in sorted(t.patterns, key=lambda p: -p.weight)[:2]}
        out.append(
            _signature(
                _run(e, t, build_hypotheses(e, t, NOW), params, "new", cluster_confirmations=confirmed, cluster_size=10)
            )
        )
    return out


def stale(params: ParameterConfig):
    """Hypotheses last moved 0, 30, 60, ... days ago: recency decides between them."""
    out = []
    for e in ENTITIES[:15]:
        t = TEMPLATES[e.template_id]
        hyps = [
            replace(h, created_at=NOW - i * 30 * DAY, updated_at=NOW - i * 30 * DAY)
            for i, h in enumerate(reversed(build_hypotheses(e, t, NOW)))
        ]
        out.append(_signature(_run(e, t, hyps, params, "new", cluster_confirmations={})))
    return out


_ODD = Template(
    id="odd",
    name="Template with a category outside the table",
    patterns=(
        Pattern("Stadium naming rights sale", "Sponsorship", 0.30, ("naming rights",)),
        Pattern("CRM platform procurement", "CRM Implementation", 0.30, ("CRM",)),
        Pattern("Ticketing system replacement", "Ticketing", 0.30, ("ticketing",)),
    ),
    channels=(Channel(HopType.OFFICIAL_SITE, 1), Channel(HopType.PRESS_RELEASE, 2), Channel(HopType.DOCUMENT, 3)),
)
_ODD_ENTITIES = [replace(e, template_id="odd") for e in ENTITIES[:10]]
_ODD_WORLD = SimulatedWorld(1, {"odd": _ODD}, _ODD_ENTITIES)


def other_category(params: ParameterConfig):
    """A user template whose first pattern's category ('Sponsorship') is outside the value table."""
    return [
        _signature(
            _run(e, _ODD, build_hypotheses(e, _ODD, NOW), params, "new", world=_ODD_WORLD, cluster_confirmations={})
        )
        for e in _ODD_ENTITIES
    ]


def easy_promotion(params: ParameterConfig):
    """promote_confidence at its lowest, so the accepts threshold is what decides promotion."""
    return catalogue(params.with_changes(promote_confidence=0.40))


def cache_ttl(params: ParameterConfig):
    """Whether an entry put at t=0 is still served at t=600 s."""
    now = [0.0]
    cache = HypothesisCache.from_params(params, timer=lambda: now[0])
    cache.put("k", "v", entity_id="e")
    now[0] = 600.0
    return cache.get("k")


def cache_size(params: ParameterConfig):
    """How many of 500 entries the cache keeps."""
    cache = HypothesisCache.from_params(params)
    for i in range(500):
        cache.put(f"k{i}", i, entity_id="e")
    return len(cache)


#: parameter -> (changed value, scenario). The scenario runs with BASE and with BASE + change.
EFFECTS = {
    "value_csuite": (3.0, catalogue),
    "value_strategic": (3.0, catalogue),
    "value_digital": (3.0, catalogue),
    "value_data": (3.0, catalogue),
    "value_commercial": (3.0, catalogue),
    "value_default": (3.0, catalogue),
    "value_other": (3.0, other_category),
    "delta_accept": (0.20, catalogue),
    "delta_weak_accept": (0.0, catalogue),
    "delta_reject": (-0.20, catalogue),
    "novelty_decay": (0.0, clustered),
    "temporal_decay": (0.5, stale),
    "max_iterations": (5, catalogue),
    "max_depth": (1, catalogue),
    "depth_patience": (6, catalogue),
    "flat_window": (3, catalogue),
    "flat_epsilon": (0.10, catalogue),
    "stop_confidence": (0.50, catalogue),
    "promote_confidence": (0.40, catalogue),
    "promote_accepts": (1, easy_promotion),
    "degrade_confidence": (0.60, catalogue),
    "degrade_rejects": (1, catalogue),
    "saturation_window": (10, catalogue),
    "saturation_count": (1, catalogue),
    "cluster_min_size": (20, clustered),
    "cluster_min_confirmations": (3, clustered),
    "cache_ttl_s": (3600.0, cache_ttl),
    "cache_max_items": (100, cache_size),
    "max_cost_usd": (0.10, catalogue),
    "cost_safety_margin": (0.50, catalogue),
    "actionable_min_accepts": (10, catalogue),
    "actionable_min_categories": (1, catalogue),
    "exploration_bonus": (0.0, catalogue),
    "exploitation_bonus": (1.0, catalogue),
    "channel_w_depth": (0.0, catalogue),
    "channel_w_yield": (3.0, catalogue),
    "channel_w_cost": (3.0, catalogue),
    "channel_w_repeat": (0.0, catalogue),
    "channel_w_priority": (3.0, catalogue),
}


def test_the_table_covers_every_parameter_and_every_group():
    assert set(EFFECTS) == {s.name for s in PARAMETER_SPECS}
    assert {s.group for s in PARAMETER_SPECS if s.name in EFFECTS} == set(GROUPS)


@pytest.mark.parametrize("name", [s.name for s in PARAMETER_SPECS])
def test_changing_the_parameter_changes_behaviour(name):
    value, scenario = EFFECTS[name]
    assert getattr(BASE, name) != value
    changed = BASE.with_changes(**{name: value})
    assert _base(scenario) != scenario(changed), f"{name} = {value} changed nothing in {scenario.__name__}"


_BASE_RESULTS: dict = {}


def _base(scenario):
    """The scenario with default parameters, computed once per module (runs are deterministic)."""
    if scenario not in _BASE_RESULTS:
        _BASE_RESULTS[scenario] = scenario(BASE)
    return _BASE_RESULTS[scenario]


# ---- the old system is the baseline: it honours the shared rules and ignores the new system's knobs

SHARED_BY_OLD = {
    "delta_accept": 0.20,
    "delta_reject": -0.20,
    "max_iterations": 5,
    "max_depth": 1,
    "degrade_rejects": 1,
    "saturation_count": 1,
    "promote_confidence": 0.40,
    "max_cost_usd": 0.10,
    "actionable_min_accepts": 10,
}
NEW_ONLY = {
    "value_csuite": 3.0,
    "exploration_bonus": 0.0,
    "channel_w_cost": 3.0,
    "depth_patience": 6,
    "flat_window": 3,
    "stop_confidence": 0.50,
}


@pytest.mark.parametrize("name", sorted(SHARED_BY_OLD))
def test_old_system_honours_the_shared_rules(name):
    assert _base(old_system) != old_system(BASE.with_changes(**{name: SHARED_BY_OLD[name]}))


@pytest.mark.parametrize("name", sorted(NEW_ONLY))
def test_old_system_ignores_eig_channel_and_early_stop_parameters(name):
    assert _base(old_system) == old_system(BASE.with_changes(**{name: NEW_ONLY[name]}))


def test_novelty_and_cluster_rules_show_in_the_recorded_eig():
    base = clustered(BASE)
    off = clustered(BASE.with_changes(cluster_min_size=20))
    eig = lambda sigs: [h for s in sigs for h in s[0]]  # noqa: E731
    assert eig(base) != eig(off)


def test_no_parameter_is_left_out_of_the_hash():
    for spec in PARAMETER_SPECS:
        value, _ = EFFECTS[spec.name]
        assert BASE.with_changes(**{spec.name: value}).hash() != BASE.hash(), spec.name


def test_entity_fixture_is_plausible():
    assert len({e.template_id for e in ENTITIES}) >= 3
    assert all(isinstance(e, Entity) for e in ENTITIES)
