"""The simulated world: deterministic (also across processes), plausible, truth only for scoring."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine.catalogue.generator import build_hypotheses, generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError
from engine.core.model import Decision, Depth, HopType
from engine.core.settings import REPO_ROOT
from engine.discovery.world import DEFAULT_PROFILE_PATH, SimulatedWorld, WorldProfile, unit

NOW = 1_700_000_000.0
CATALOGUE = generate_catalogue(3400, 7)
TEMPLATES = templates_for(CATALOGUE, load_templates())


def _world(seed=1, entities=CATALOGUE, **kw):
    return SimulatedWorld(seed, TEMPLATES, entities, **kw)


def _answers(world, entities, attempts=2):
    """Every (entity, hypothesis, allowed hop type, attempt) answer of the world, in a stable order."""
    out = []
    for e in entities:
        t = TEMPLATES[e.template_id]
        for h in build_hypotheses(e, t, NOW):
            for hop in HopType:
                for a in range(attempts):
                    r = world.evaluate(e, h, hop, Depth.AUTHORITY, a)
                    out.append((e.id, h.id, hop.value, a, r.decision.value, r.cost_usd, round(r.latency_s, 9), r.error))
    return out


def _digest(rows) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


# --------------------------------------------------------------------------- determinism


def test_same_inputs_same_answers_and_the_seed_matters():
    few = CATALOGUE[:15]
    assert _answers(_world(1, few), few) == _answers(_world(1, few), few)
    assert _answers(_world(1, few), few) != _answers(_world(2, few), few)


def test_answers_do_not_depend_on_call_order():
    few = CATALOGUE[:5]
    w = _world(1, few)
    forward = _answers(w, few)
    backward = _answers(_world(1, few), list(reversed(few)))
    assert sorted(forward) == sorted(backward)


@pytest.mark.slow  # starts or kills real processes
def test_deterministic_across_processes_with_different_hash_seeds():
    few = CATALOGUE[:10]
    here = _digest(_answers(_world(3, few), few))
    code = (
        "import json, hashlib, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tests.discovery.test_world import _answers, _world, _digest, CATALOGUE\n"
        "print(_digest(_answers(_world(3, CATALOGUE[:10]), CATALOGUE[:10])))\n"
    )
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code, str(REPO_ROOT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO_ROOT,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == here


def test_unit_draws_are_uniform_and_keyed():
    draws = [unit(1, "x", i) for i in range(20000)]
    assert min(draws) >= 0.0 and max(draws) < 1.0
    assert abs(statistics.mean(draws) - 0.5) < 0.01
    assert unit(1, "a", "b") == unit(1, "a", "b") != unit(1, "ab")


# --------------------------------------------------------------------------- plausibility


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_about_15_to_30_percent_of_the_catalogue_is_truly_actionable(seed):
    w = _world(seed)
    rate = sum(bool(w.truth(e.id)) for e in CATALOGUE) / len(CATALOGUE)
    assert 0.15 <= rate <= 0.30, rate


def _sample(world, n_entities=300):
    """One answer per (entity, hypothesis, hop type) at the hop type's native depth, attempt 0."""
    rows = []
    for e in CATALOGUE[:n_entities]:
        t = TEMPLATES[e.template_id]
        for h in build_hypotheses(e, t, NOW):
            true = world.pattern_true(e, h.pattern)
            for hop in HopType:
                rows.append((hop, true, world.evaluate(e, h, hop, hop.min_depth, 0)))
    return rows


@pytest.fixture(scope="module")
def sample():
    return _sample(_world(1))


def test_hop_costs_are_between_one_and_five_cents(sample):
    ok = [r.cost_usd for _, _, r in sample if r.error is None]
    assert min(ok) >= 0.01 and max(ok) <= 0.05
    failed = [r.cost_usd for _, _, r in sample if r.error is not None]
    assert failed and max(failed) <= 0.05 * 0.5 + 1e-9  # a failed hop is charged a fraction


def test_cost_never_exceeds_the_quote(sample):
    w = _world(1)
    for hop, _, r in sample:
        assert r.cost_usd <= w.max_cost(hop, hop.min_depth) + 1e-12


def test_latency_medians_are_one_to_eight_seconds_and_long_tailed(sample):
    for hop in HopType:
        lat = [r.latency_s for h, _, r in sample if h is hop and r.error is None]
        med = statistics.median(lat)
        assert 1.0 <= med <= 8.0, (hop, med)
        p95 = sorted(lat)[int(0.95 * len(lat))]
        assert p95 > 1.8 * med, (hop, med, p95)  # long tail


def test_small_error_rate_with_counted_types(sample):
    errors = Counter(r.error for _, _, r in sample if r.error is not None)
    rate = sum(errors.values()) / len(sample)
    assert 0.005 <= rate <= 0.05
    assert set(errors) <= {"timeout", "http_5xx", "bad_response"}
    assert errors["timeout"] > errors["bad_response"]
    for _, _, r in sample:
        if r.error:
            assert r.decision is Decision.NO_PROGRESS


def test_sensitivity_beats_false_accept_for_every_hop_type(sample):
    for hop in HopType:
        rows = [(t, r) for h, t, r in sample if h is hop and r.error is None]
        acc_true = [r.decision is Decision.ACCEPT for t, r in rows if t]
        acc_false = [r.decision is Decision.ACCEPT for t, r in rows if not t]
        assert statistics.mean(acc_true) > 2 * statistics.mean(acc_false), hop


def test_no_progress_is_commoner_at_the_surface_than_at_authority():
    w = _world(1)
    surface, authority = [], []
    for e in CATALOGUE[:300]:
        t = TEMPLATES[e.template_id]
        for h in build_hypotheses(e, t, NOW):
            surface.append(w.evaluate(e, h, HopType.OFFICIAL_SITE, Depth.SURFACE, 0).decision is Decision.NO_PROGRESS)
            authority.append(w.evaluate(e, h, HopType.DOCUMENT, Depth.AUTHORITY, 0).decision is Decision.NO_PROGRESS)
    assert statistics.mean(surface) > statistics.mean(authority) + 0.1
    assert statistics.mean(surface) > 0.5


def test_repeating_a_hop_type_finds_less():
    w = _world(1)
    first, third = [], []
    for e in CATALOGUE[:300]:
        t = TEMPLATES[e.template_id]
        for h in build_hypotheses(e, t, NOW):
            first.append(w.evaluate(e, h, HopType.PRESS_RELEASE, Depth.SURFACE, 0).decision is Decision.NO_PROGRESS)
            third.append(w.evaluate(e, h, HopType.PRESS_RELEASE, Depth.SURFACE, 2).decision is Decision.NO_PROGRESS)
    assert statistics.mean(third) > statistics.mean(first) + 0.1


def test_a_hop_below_its_depth_is_refused():
    e = CATALOGUE[0]
    h = build_hypotheses(e, TEMPLATES[e.template_id], NOW)[0]
    with pytest.raises(ValueError, match="needs depth"):
        _world(1).evaluate(e, h, HopType.DOCUMENT, Depth.SURFACE, 0)


# --------------------------------------------------------------------------- truth and time


def test_truth_is_none_for_unknown_entities_and_known_after_evaluate():
    e = CATALOGUE[0]
    w = SimulatedWorld(1, TEMPLATES)
    assert w.truth(e.id) is None
    h = build_hypotheses(e, TEMPLATES[e.template_id], NOW)[0]
    w.evaluate(e, h, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert w.truth(e.id) in (True, False)
    assert w.truth(e.id) == _world(1).truth(e.id)


def test_truth_matches_true_patterns_across_categories():
    w = _world(1)
    for e in CATALOGUE[:200]:
        t = TEMPLATES[e.template_id]
        cats = {t.pattern(p).category for p in w.true_patterns(e)}
        assert w.truth(e.id) == (len(cats) >= 2)


def test_virtual_time_by_default_and_real_sleep_when_asked():
    e = CATALOGUE[0]
    h = build_hypotheses(e, TEMPLATES[e.template_id], NOW)[0]
    slept = []
    virtual = _world(1, sleeper=slept.append)
    r = virtual.evaluate(e, h, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert slept == []
    real = _world(1, sleep=True, time_scale=0.001, sleeper=slept.append)
    r2 = real.evaluate(e, h, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
    assert r2 == r and slept == [pytest.approx(r.latency_s * 0.001)]


# --------------------------------------------------------------------------- the profile


def test_shipped_profile_loads_and_documents_itself():
    data = json.loads(DEFAULT_PROFILE_PATH.read_text())
    assert data["assumptions"] and data["about"]
    for hop in HopType:
        assert data["hops"][hop.value]["_doc"]
    p = WorldProfile.load()
    assert set(p.hops) == set(HopType)


def test_bad_profile_is_one_line_error_naming_the_field(tmp_path: Path):
    data = json.loads(DEFAULT_PROFILE_PATH.read_text())
    data["hops"]["document"]["by_depth"]["3"]["sensitivity"] = 1.7
    del data["errors"]["timeout_s"]
    bad = tmp_path / "profile.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        WorldProfile.load(bad)
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg
    assert "sensitivity = 1.7 is outside [0, 1]" in msg and "errors.timeout_s is missing" in msg
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        WorldProfile.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        WorldProfile.load(tmp_path / "nope.json")
