"""The two discovery systems: cost cap, stop reasons, shadow vs live, fairness, engine time."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.catalogue.generator import build_hypotheses, generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.model import (
    Channel,
    Decision,
    Depth,
    DomainError,
    EvidenceResult,
    HopType,
    Pattern,
    Status,
    Template,
)
from engine.core.params import ParameterConfig
from engine.discovery.systems import STOP_CODES, channel_scores, run_batch, run_discovery, stop_code
from engine.discovery.world import SimulatedWorld

NOW = 1_700_000_000.0
ENTITIES = generate_catalogue(200, 7)
TEMPLATES = templates_for(ENTITIES, load_templates())
WORLD = SimulatedWorld(1, TEMPLATES, ENTITIES)
E = ENTITIES[0]
T = TEMPLATES[E.template_id]


def fresh(e=E):
    return build_hypotheses(e, TEMPLATES[e.template_id], NOW)


def run(source, params=ParameterConfig(), system="new", e=E, hyps=None, **kw):
    kw.setdefault("cluster_confirmations", {})
    return run_discovery(
        e, TEMPLATES[e.template_id], fresh(e) if hyps is None else hyps, source, params, system, clock=lambda: NOW, **kw
    )


class Scripted:
    """A source that answers every hop with one decision at a fixed cost, and counts the hops."""

    def __init__(self, decision=Decision.ACCEPT, cost=0.02, quote=None, latency=2.0, error=None):
        self.decision, self.cost, self.quote, self.latency, self.error = decision, cost, quote, latency, error
        self.calls = []

    def max_cost(self, hop_type, depth):
        return self.cost if self.quote is None else self.quote

    def evaluate(self, entity, hypothesis, hop_type, depth, attempt):
        self.calls.append((hypothesis.id, hop_type, depth, attempt))
        return EvidenceResult(self.decision, self.cost, self.latency, error=self.error)


class FakeStore:
    def __init__(self):
        self.applied = []

    def cluster_confirmations(self, cluster):
        return {}

    def apply_run(self, entity_id, run_id, system, hyps, records):
        self.applied.append((entity_id, run_id, system, list(hyps), list(records)))


# --------------------------------------------------------------------------- cost cap


@pytest.mark.parametrize("system", ["new", "old"])
@pytest.mark.parametrize("max_cost", [0.05, 0.15, 0.50, 1.0])
def test_a_run_never_exceeds_the_cost_cap(system, max_cost):
    p = ParameterConfig(max_cost_usd=max_cost, max_iterations=100)
    results = run_batch(ENTITIES[:60], TEMPLATES, WORLD, p, system, now=NOW)
    for r in results:
        assert r.cost_usd <= p.cost_cap_usd + 1e-9 <= max_cost + 1e-9
    if max_cost <= 0.15:
        assert Counter(stop_code(r.stop_reason) for r in results)["cost_cap"] > 0


def test_cost_cap_holds_when_actual_costs_reach_the_quote():
    src = Scripted(Decision.NO_PROGRESS, cost=0.03)
    p = ParameterConfig(
        max_cost_usd=0.10,
        cost_safety_margin=0.0,
        max_iterations=100,
        saturation_window=20,
        saturation_count=20,
        flat_window=20,
        flat_epsilon=0.0,
        depth_patience=10,
    )
    for system in ("new", "old"):
        r = run(src, p, system)
        assert r.iterations == 3 and r.cost_usd == pytest.approx(0.09)
        assert stop_code(r.stop_reason) == "cost_cap"


# --------------------------------------------------------------------------- stop reasons


def test_every_stop_reason_is_reachable():
    reasons = {}
    accept = Scripted(Decision.ACCEPT, cost=0.01)
    reasons["actionable"] = run(accept, ParameterConfig(stop_confidence=0.5)).stop_reason
    reasons["nothing_active"] = run(
        Scripted(Decision.REJECT, cost=0.001), ParameterConfig(degrade_confidence=0.6, degrade_rejects=1)
    ).stop_reason
    reasons["flat"] = run(
        Scripted(Decision.NO_PROGRESS, cost=0.001), ParameterConfig(flat_window=2, depth_patience=10)
    ).stop_reason
    reasons["depth_exhausted"] = run(
        Scripted(Decision.REJECT, cost=0.001), ParameterConfig(depth_patience=2)
    ).stop_reason
    reasons["max_iterations"] = run(
        Scripted(Decision.WEAK_ACCEPT, cost=0.001), ParameterConfig(max_iterations=4)
    ).stop_reason
    reasons["cost_cap"] = run(Scripted(Decision.WEAK_ACCEPT, cost=0.2), ParameterConfig()).stop_reason
    only_deep = Template("deep", "deep", T.patterns, (Channel(HopType.RFP_PORTAL, 1),))
    e = E.__class__(**{**E.__dict__, "template_id": "deep"})
    hyps = [h.__class__(**{**h.__dict__, "entity_id": e.id}) for h in fresh()]
    reasons["no_channel"] = run_discovery(
        e, only_deep, hyps, Scripted(), ParameterConfig(max_depth=2), clock=lambda: NOW
    ).stop_reason
    for code, reason in reasons.items():
        assert stop_code(reason) == code, reason
    assert set(reasons) == set(STOP_CODES)


def test_stop_reasons_carry_their_numbers():
    r = run(Scripted(Decision.WEAK_ACCEPT, cost=0.2), ParameterConfig(max_cost_usd=0.5))
    assert "$0.475 cap" in r.stop_reason and "quote $0.200" in r.stop_reason


def test_old_system_stops_only_on_iterations_cost_or_nothing_active():
    results = run_batch(ENTITIES[:80], TEMPLATES, WORLD, ParameterConfig(), "old", now=NOW)
    assert {stop_code(r.stop_reason) for r in results} <= {"max_iterations", "cost_cap", "nothing_active"}


# --------------------------------------------------------------------------- the two systems


def test_new_system_probes_the_top_eig_hypothesis_first():
    src = Scripted(Decision.NO_PROGRESS, cost=0.001)
    r = run(src, ParameterConfig(exploration_bonus=0.0, exploitation_bonus=0.0))
    best = max(fresh(), key=lambda h: ((1 - h.confidence) * ParameterConfig().category_value(h.category), h.id))
    assert r.hops[0].hypothesis_id == best.id
    assert r.hops[0].eig == pytest.approx((1 - best.confidence) * ParameterConfig().category_value(best.category))


def test_new_system_goes_deeper_after_patience_without_accepts():
    src = Scripted(Decision.REJECT, cost=0.001)
    r = run(src, ParameterConfig(depth_patience=2, degrade_rejects=10))
    depths = [h.depth for h in r.hops]
    assert depths[:2] == [Depth.SURFACE] * 2 and depths[2:4] == [Depth.OPERATIONAL] * 2
    assert depths[4:6] == [Depth.AUTHORITY] * 2
    for h in r.hops:
        assert h.hop_type.min_depth <= h.depth


def test_old_system_walks_patterns_in_template_order_and_channels_in_fixed_order():
    src = Scripted(Decision.WEAK_ACCEPT, cost=0.001)
    r = run(src, ParameterConfig(max_iterations=2 * len(T.patterns)), "old")
    pattern_order = [p.name for p in T.patterns]
    assert [h.pattern for h in r.hops[: len(pattern_order)]] == pattern_order
    order = T.channel_order()
    assert all(h.hop_type == order[0] for h in r.hops[: len(pattern_order)])
    assert all(h.hop_type == order[1] for h in r.hops[len(pattern_order) :])
    assert all(h.depth == h.hop_type.min_depth for h in r.hops)


def test_both_systems_meet_the_same_world():
    """A hop asked by both systems (same entity, hypothesis, hop type, attempt, depth) gets the same answer."""
    shared = 0
    for e in ENTITIES[:40]:
        new = run(WORLD, system="new", e=e)
        old = run(WORLD, system="old", e=e)

        def keyed(res):
            seen, out = Counter(), {}
            for h in res.hops:
                k = (h.hypothesis_id, h.hop_type)
                out[(*k, seen[k], h.depth)] = (h.decision, h.cost_usd, h.latency_s, h.error)
                seen[k] += 1
            return out

        a, b = keyed(new), keyed(old)
        for k in set(a) & set(b):
            assert a[k] == b[k]
            shared += 1
    assert shared > 20


def test_same_inputs_same_run():
    assert run(WORLD).hops == run(WORLD).hops
    assert run(WORLD, system="old").hops == run(WORLD, system="old").hops


def test_actionable_needs_accepts_across_categories():
    r = run(Scripted(Decision.ACCEPT, cost=0.001), ParameterConfig(max_iterations=2, exploration_bonus=0.0))
    cats = {h.category for h in r.hops}
    assert r.actionable == (len(cats) >= 2)
    one_cat = ParameterConfig(max_iterations=2, actionable_min_categories=1)
    assert run(Scripted(Decision.ACCEPT, cost=0.001), one_cat).actionable


def test_errored_hops_are_no_progress_and_counted():
    r = run(Scripted(Decision.ACCEPT, cost=0.01, error="timeout"), ParameterConfig(max_iterations=5, flat_window=20))
    assert r.errors == ("timeout",) * r.iterations
    assert all(h.decision is Decision.NO_PROGRESS and h.error == "timeout" for h in r.hops)
    assert not r.actionable


# --------------------------------------------------------------------------- writes


def test_live_run_writes_once_through_apply_run_and_shadow_writes_nothing():
    store = FakeStore()
    shadow = run(WORLD, store=store, shadow=True, run_id="s")
    assert store.applied == [] and shadow.shadow
    live = run(WORLD, store=store, run_id="L")
    assert not live.shadow
    ((eid, run_id, system, hyps, records),) = store.applied
    assert (eid, run_id, system) == (E.id, "L", "new")
    assert records == list(live.hops) == list(shadow.hops)
    touched = {h.hypothesis_id for h in live.hops}
    assert {h.id for h in hyps} == touched
    final = {o.id: o for o in live.outcomes}
    for h in hyps:
        assert h.confidence == final[h.id].confidence and h.status == final[h.id].status


def test_a_run_with_nothing_selectable_makes_no_hop_and_writes_nothing():
    store = FakeStore()
    killed = [h.__class__(**{**h.__dict__, "status": Status.KILLED}) for h in fresh()]
    r = run(WORLD, store=store, hyps=killed)
    assert r.iterations == 0 and stop_code(r.stop_reason) == "nothing_active"
    assert store.applied == []


def test_bad_input_is_a_domain_error():
    with pytest.raises(DomainError, match="unknown system"):
        run(WORLD, system="newest")
    other = ENTITIES[1]
    with pytest.raises(DomainError, match="belongs to"):
        run(
            WORLD,
            hyps=fresh(other)
            if other.template_id == E.template_id
            else [h.__class__(**{**h.__dict__, "entity_id": other.id}) for h in fresh()],
        )


# --------------------------------------------------------------------------- engine time


def test_engine_time_excludes_evidence_time():
    clock = [0.0]

    class Slow(Scripted):
        def evaluate(self, *a):
            clock[0] += 5.0  # every hop "takes" 5 s of the timer
            return super().evaluate(*a)

    def timer():
        clock[0] += 0.001  # the engine's own work: 1 ms per timer read
        return clock[0]

    r = run(Slow(Decision.WEAK_ACCEPT, cost=0.001), ParameterConfig(max_iterations=6), timer=timer)
    assert r.iterations == 6
    assert r.engine_time_s < 1.0  # 6 x 5 s of evidence excluded
    assert r.evidence_latency_s == pytest.approx(6 * 2.0)


def test_channel_scores_are_pure_and_follow_the_weights():
    chans = [Channel(HopType.OFFICIAL_SITE, 1), Channel(HopType.DOCUMENT, 2)]
    quotes = {HopType.OFFICIAL_SITE: 0.015, HopType.DOCUMENT: 0.048}
    cheap_first = channel_scores(
        chans, Depth.AUTHORITY, quotes, {}, {}, ParameterConfig(channel_w_cost=3.0, channel_w_depth=0.0)
    )
    deep_first = channel_scores(
        chans, Depth.AUTHORITY, quotes, {}, {}, ParameterConfig(channel_w_depth=3.0, channel_w_cost=0.0)
    )
    assert cheap_first[0].hop_type is HopType.OFFICIAL_SITE
    assert deep_first[0].hop_type is HopType.DOCUMENT
    assert channel_scores([], Depth.SURFACE, {}, {}, {}, ParameterConfig()) == []


def test_custom_template_patterns_work_end_to_end():
    t = Template(
        "mini",
        "mini",
        (Pattern("A", "CRM Implementation", 0.3), Pattern("B", "Ticketing", 0.3)),
        (Channel(HopType.OFFICIAL_SITE, 1), Channel(HopType.DOCUMENT, 2)),
    )
    e = E.__class__(**{**E.__dict__, "template_id": "mini"})
    world = SimulatedWorld(2, {"mini": t}, [e])
    r = run_discovery(e, t, build_hypotheses(e, t, NOW), world, clock=lambda: NOW)
    assert r.iterations > 0 and {h.pattern for h in r.hops} <= {"A", "B"}


def test_the_hot_path_picks_exactly_what_rank_hypotheses_ranks_first():
    import random
    from dataclasses import replace as dc_replace

    from engine.discovery.eig import best_hypothesis, rank_hypotheses

    rng = random.Random(5)
    for trial in range(300):
        e = ENTITIES[trial % len(ENTITIES)]
        hyps = [
            dc_replace(
                h,
                confidence=rng.choice([h.confidence, rng.random()]),
                accepts=rng.choice([0, 0, 1, 2]),
                status=rng.choice([Status.ACTIVE, Status.ACTIVE, Status.PROMOTED]),
                updated_at=NOW - rng.choice([0.0, 3 * 86400.0, 90 * 86400.0]),
            )
            for h in fresh(e)
        ]
        if trial % 7 == 0:  # exact ties
            hyps = [dc_replace(h, confidence=0.5, category="Ticketing") for h in hyps]
        p = ParameterConfig(
            exploration_bonus=rng.choice([0.0, 0.5, 1.0]), novelty_decay=rng.choice([0.0, 1.0]), cluster_min_size=1
        )
        conf = {h.pattern: rng.choice([0, 1, 3]) for h in hyps}
        tries = {h.id: rng.choice([0, 1, 4]) for h in hyps}
        top = rank_hypotheses(hyps, p, now=NOW, confirmations=conf, cluster_size=10, tries=tries)[0]
        h, eig = best_hypothesis(hyps, p, now=NOW, confirmations=conf, cluster_size=10, tries=tries)
        assert (h.id, eig) == (top.hypothesis_id, top.eig)
    assert best_hypothesis([], ParameterConfig(), now=NOW) is None
