"""Run limits: the setting's validation and storage, and the wrapper that bounds requests in flight and hop rate."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.catalogue.generator import build_hypotheses, generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError
from engine.core.model import Decision, Depth, EvidenceResult, HopType
from engine.discovery.evidence import EvidenceSource, EvidenceUnavailable
from engine.discovery.limits import MAX_CONCURRENCY, MAX_IN_FLIGHT, LimitedSource, RunLimits, limit_source
from engine.discovery.world import SimulatedWorld

NOW = 1_700_000_000.0
ENTITIES = generate_catalogue(6, 7)
TEMPLATES = templates_for(ENTITIES, load_templates())
E = ENTITIES[0]
H = build_hypotheses(E, TEMPLATES[E.template_id], NOW)[0]
HOP = (E, H, HopType.OFFICIAL_SITE, Depth.SURFACE, 0)
#: how long a test waits for threads to reach a state before it fails (never a speed target)
PATIENCE_S = 10.0


class Gate:
    """A fake evaluator that holds every hop until released, counting hops in flight and their peak."""

    def __init__(self, clock=time.monotonic):
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self.starts: list[float] = []
        self.clock = clock
        self.errors = {"timeout": 2}
        self.closed = False

    def max_cost(self, hop_type, depth):
        return 0.03

    def evaluate(self, entity, hypothesis, hop_type, depth, attempt):
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.starts.append(self.clock())
        try:
            self.release.wait(PATIENCE_S)
            return EvidenceResult(decision=Decision.ACCEPT, cost_usd=0.01, latency_s=0.5)
        finally:
            with self.lock:
                self.in_flight -= 1

    def truth(self, entity_id):
        return entity_id == E.id

    def close(self):
        self.closed = True


def _wait_for(condition) -> bool:
    give_up = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.005)
    return True


# --------------------------------------------------------------------------- the setting


def test_defaults_round_trip_and_describe():
    assert (
        RunLimits()
        == RunLimits.from_dict(None)
        == RunLimits.from_dict({})
        == RunLimits.from_dict({"concurrency": None})
    )
    limits = RunLimits(concurrency=32, max_hops_per_s=20, max_in_flight=16)
    assert limits.max_hops_per_s == 20.0 and isinstance(limits.max_hops_per_s, float)
    assert limits.to_dict() == {"concurrency": 32, "max_hops_per_s": 20.0, "max_in_flight": 16}
    assert RunLimits.from_dict(limits.to_dict()) == limits
    assert limits.describe() == "32 in flight, at most 20 hops/s, 16 requests at once"
    assert RunLimits().describe() == "1 in flight"
    assert RunLimits(4, max_hops_per_s=0.5).describe() == "4 in flight, at most 0.5 hops/s"


@pytest.mark.parametrize(
    "kwargs,flag",
    [
        ({"concurrency": 0}, "--concurrency must be a whole number from 1 to 256, got 0"),
        ({"concurrency": MAX_CONCURRENCY + 1}, "--concurrency"),
        ({"concurrency": 2.0}, "--concurrency"),
        ({"concurrency": True}, "--concurrency"),
        ({"max_hops_per_s": 0}, "--max-hops-per-s must be a finite number of hops per second > 0, got 0"),
        ({"max_hops_per_s": -3.0}, "--max-hops-per-s"),
        ({"max_hops_per_s": float("nan")}, "--max-hops-per-s"),
        ({"max_hops_per_s": float("inf")}, "--max-hops-per-s"),
        ({"max_hops_per_s": "20"}, "--max-hops-per-s"),
        ({"max_in_flight": 0}, "--max-in-flight must be a whole number from 1 to 1024, got 0"),
        ({"max_in_flight": MAX_IN_FLIGHT + 1}, "--max-in-flight"),
        ({"max_in_flight": 1.5}, "--max-in-flight"),
    ],
)
def test_a_bad_limit_is_one_line_naming_its_flag(kwargs, flag):
    with pytest.raises(ConfigError) as err:
        RunLimits(**kwargs)
    msg = str(err.value)
    assert msg.startswith(flag) and "\n" not in msg


def test_stored_limits_are_checked_like_flags():
    with pytest.raises(ConfigError, match="--max-in-flight"):
        RunLimits.from_dict({"concurrency": 8, "max_in_flight": -1})
    with pytest.raises(ConfigError, match="unknown field threads"):
        RunLimits.from_dict({"threads": 8})
    with pytest.raises(ConfigError, match="must be an object"):
        RunLimits.from_dict([8])


# --------------------------------------------------------------------------- the wrapper


def test_no_source_limit_leaves_the_source_itself():
    world = SimulatedWorld(4, TEMPLATES, ENTITIES)
    assert limit_source(world, None) is world
    assert limit_source(world, RunLimits()) is world
    assert limit_source(world, RunLimits(concurrency=64)) is world  # concurrency is the runner's, not the source's
    assert isinstance(limit_source(world, RunLimits(max_in_flight=4)), LimitedSource)


def test_everything_but_the_bounds_is_the_wrapped_sources_own():
    world = SimulatedWorld(4, TEMPLATES, ENTITIES[:1])
    limited = limit_source(world, RunLimits(max_in_flight=2, max_hops_per_s=1000))
    assert isinstance(limited, EvidenceSource)
    assert limited.max_cost(HopType.DOCUMENT, Depth.AUTHORITY) == world.max_cost(HopType.DOCUMENT, Depth.AUTHORITY)
    assert limited.evaluate(*HOP) == world.evaluate(*HOP)
    limited.register(ENTITIES)
    assert [limited.truth(e.id) for e in ENTITIES] == [world.truth(e.id) for e in ENTITIES]
    assert limited.seed == 4
    gate = Gate()
    gate.release.set()
    with LimitedSource(gate, max_in_flight=1) as wrapped:
        assert wrapped.errors == {"timeout": 2} and wrapped.truth(E.id) is True
    assert gate.closed  # leaving the block closed the source (an HTTP evaluator's connections)
    with pytest.raises(AttributeError):
        wrapped.no_such_thing  # noqa: B018


def test_in_flight_bound_holds_under_64_threads_and_nothing_is_asked_twice():
    gate = Gate()
    limited = limit_source(gate, RunLimits(concurrency=64, max_in_flight=5))
    assert isinstance(limited, LimitedSource)
    with ThreadPoolExecutor(64) as pool:
        futures = [pool.submit(limited.evaluate, *HOP) for _ in range(64)]
        assert _wait_for(lambda: gate.in_flight == 5)
        time.sleep(0.2)  # time for any thread that would slip past the bound to do so
        assert gate.in_flight == 5 and gate.calls == 5  # 59 callers wait; none reached the evaluator
        gate.release.set()
        results = [f.result() for f in futures]
    assert len(results) == 64 and all(r.decision is Decision.ACCEPT for r in results)
    assert gate.calls == 64  # each hop asked once: waiting never turns into a second (charged) request
    assert gate.peak == limited.peak_in_flight == 5


def test_a_failing_source_frees_its_slot():
    class Down:
        calls = 0

        def max_cost(self, hop_type, depth):
            return 0.05

        def evaluate(self, *hop):
            Down.calls += 1
            raise EvidenceUnavailable("evidence evaluator at http://x is unreachable")

    limited = limit_source(Down(), RunLimits(max_in_flight=1))
    for _ in range(3):  # with the slot kept by the first failure, the second call would wait for ever
        with pytest.raises(EvidenceUnavailable):
            limited.evaluate(*HOP)
    assert Down.calls == 3


def test_hop_starts_are_spaced_by_the_rate_on_an_injected_clock():
    now = [100.0]
    naps: list[float] = []

    def sleep(seconds):
        naps.append(seconds)
        now[0] += seconds

    gate = Gate(clock=lambda: now[0])
    gate.release.set()
    limited = limit_source(gate, RunLimits(max_hops_per_s=16), clock=lambda: now[0], sleeper=sleep)
    for i in range(41):
        limited.evaluate(*HOP)
        if i == 19:
            now[0] += 5.0  # an idle spell: the next hop may start at once (a bucket of one), not a burst
    starts = gate.starts
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) == 1 / 16  # 1/16 s: exact in binary, so the clock's sums are exact too
    for t in starts:  # at most 16 starts in any second
        assert sum(t <= s < t + 1.0 for s in starts) <= 16
    assert starts[20] - starts[19] == pytest.approx(5.0) and len(naps) == 39


def test_rate_bound_holds_from_many_threads():
    gate = Gate()
    gate.release.set()
    hops, rate = 11, 50.0
    limited = limit_source(gate, RunLimits(max_hops_per_s=rate))
    began = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: limited.evaluate(*HOP), range(hops)))
    assert time.monotonic() - began >= (hops - 1) / rate  # 11 starts at 50/s need at least 0.2 s
    assert gate.calls == hops
