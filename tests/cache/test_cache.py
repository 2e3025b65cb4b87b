"""HypothesisCache: LRU+TTL bounded in bytes, stats, invalidation, single-flight loads. Fake timer, no sleeping."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace

import cachetools
import pytest

from engine.cache.lru import ENTRY_OVERHEAD, HypothesisCache, cached, estimate_size
from engine.core.errors import ConfigError
from engine.core.model import Hypothesis

WAIT_S = 10.0  # upper bound when waiting for other threads; never reached when the code is right


class FakeTimer:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def tick(self, dt: float) -> None:
        self.t += dt


def unit_size(_value) -> int:
    return 100 - ENTRY_OVERHEAD  # every entry costs exactly 100 bytes


def wait_until(predicate, what: str) -> None:
    done = threading.Event()
    for _ in range(int(WAIT_S / 0.001)):
        if predicate():
            return
        done.wait(0.001)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def timer() -> FakeTimer:
    return FakeTimer()


def make(timer, **kw) -> HypothesisCache:
    kw.setdefault("max_bytes", 10_000)
    kw.setdefault("ttl_s", 60.0)
    return HypothesisCache(timer=timer, **kw)


def hyp(entity: str = "arsenal-fc", pattern: str = "crm", confidence: float = 0.3) -> Hypothesis:
    return Hypothesis(
        id=f"{entity}::{pattern}",
        entity_id=entity,
        pattern=pattern,
        category="CRM Implementation",
        prior=0.3,
        confidence=confidence,
    )


# ------------------------------------------------------------------ basics & stats


def test_hits_misses_and_hit_rate(timer):
    c = make(timer)
    assert c.stats().hit_rate == 0.0
    assert c.get("a") is None
    c.put("a", 1)
    assert c.get("a") == 1
    assert c.get("a") == 1
    assert c.get("b", "dflt") == "dflt"
    s = c.stats()
    assert (s.hits, s.misses, s.items) == (2, 2, 1)
    assert s.hit_rate == pytest.approx(0.5)
    assert s.to_dict()["hit_rate"] == pytest.approx(0.5)


def test_get_many_returns_present_keys_and_counts_each_key(timer):
    c = make(timer)
    c.put_many([("a", 1, None), ("b", 2, None)])
    assert c.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    s = c.stats()
    assert (s.hits, s.misses) == (2, 1)


def test_peek_touches_neither_stats_nor_lru_order(timer):
    c = make(timer, max_bytes=200, sizeof=unit_size)
    c.put("old", 1)
    c.put("new", 2)
    assert c.peek("old") == 1
    c.put("third", 3)  # must evict "old": peek did not make it recent
    assert "old" not in c and "new" in c
    assert c.stats().hits == 0


def test_bad_limits_are_config_errors(timer):
    with pytest.raises(ConfigError, match="max_bytes"):
        make(timer, max_bytes=0)
    with pytest.raises(ConfigError, match="ttl"):
        make(timer, ttl_s=-1)
    with pytest.raises(ConfigError, match="max_items"):
        make(timer, max_items=0)


def test_from_params_reads_ttl_and_item_limit(timer):
    params = SimpleNamespace(cache_ttl_s=12.5, cache_max_items=7)
    c = HypothesisCache.from_params(params, timer=timer, max_bytes=1000)
    assert (c.ttl_s, c.max_items, c.max_bytes) == (12.5, 7, 1000)


# ------------------------------------------------------------------ TTL


def test_entry_expires_after_ttl(timer):
    c = make(timer, ttl_s=10)
    c.put("a", 1)
    timer.tick(9.999)
    assert c.get("a") == 1
    timer.tick(0.001)
    assert c.get("a") is None
    s = c.stats()
    assert s.expirations == 1 and s.items == 0 and s.bytes == 0


def test_purge_expired_removes_only_expired_entries(timer):
    c = make(timer, ttl_s=10)
    c.put("a", 1)
    timer.tick(5)
    c.put("b", 2)
    timer.tick(6)
    assert c.purge_expired() == 1
    assert c.keys() == ["b"]
    assert c.purge_expired() == 0


def test_replacing_a_value_restarts_its_ttl(timer):
    c = make(timer, ttl_s=10)
    c.put("a", 1)
    timer.tick(8)
    c.put("a", 2)
    timer.tick(8)
    assert c.get("a") == 2


# ------------------------------------------------------------------ bytes & eviction


def test_eviction_by_bytes_drops_least_recently_used(timer):
    c = make(timer, max_bytes=300, sizeof=unit_size)
    for k in "abc":
        c.put(k, k)
    assert c.get("a") == "a"  # a is now most recent; b is the LRU
    c.put("d", "d")
    assert "b" not in c and {"a", "c", "d"} <= set(c.keys())
    s = c.stats()
    assert s.evictions == 1 and s.bytes == 300 and s.items == 3


def test_bytes_never_exceed_the_limit_with_varied_sizes(timer):
    c = make(timer, max_bytes=5_000)
    rng = random.Random(7)
    for i in range(500):
        c.put(i, "x" * rng.randint(0, 1500))
        assert c.stats().bytes <= 5_000
    assert c.stats().evictions > 0


def test_size_is_charged_once_so_mutation_cannot_make_the_total_drift(timer):
    c = make(timer)
    value = [1, 2, 3]
    c.put("k", value)
    charged = c.stats().bytes
    assert charged == estimate_size([1, 2, 3]) + ENTRY_OVERHEAD
    value.extend(range(1000))  # a caller mutated a cached value (it should not, but the books must hold)
    c.put("other", "y")
    c.invalidate("k")
    c.invalidate("other")
    assert c.stats().bytes == 0


def test_zero_ttl_turns_caching_off(timer):
    c = make(timer, ttl_s=0)
    c.put("a", 1)
    assert c.get("a") is None


def test_byte_total_equals_sum_of_entries_through_every_kind_of_removal(timer):
    c = make(timer, max_bytes=4_000, ttl_s=10, max_items=30)
    rng = random.Random(11)
    charged: dict[int, int] = {}  # what each key cost when it was put, computed here independently
    for step in range(2_000):
        op = rng.random()
        key = rng.randint(0, 60)
        if op < 0.5:
            value = "v" * rng.randint(0, 300)
            c.put(key, value, entity_id=f"e{key % 7}")
            charged[key] = estimate_size(value) + ENTRY_OVERHEAD
        elif op < 0.7:
            c.get(key)
        elif op < 0.8:
            c.invalidate(key)
        elif op < 0.85:
            c.invalidate_entity(f"e{rng.randint(0, 6)}")
        elif op < 0.95:
            timer.tick(rng.random() * 3)
        else:
            c.purge_expired()
        s = c.stats()
        assert s.bytes == sum(charged[k] for k in c.keys()), f"drift at step {step}"  # noqa: SIM118 - not iterable
        assert s.items <= 30 and s.bytes <= 4_000
    c.invalidate_all()
    assert c.stats().bytes == 0


def test_value_larger_than_the_cache_is_refused_and_drops_the_old_value(timer):
    c = make(timer, max_bytes=1_000)
    c.put("k", "small")
    assert c.put("k", "x" * 5_000) is False
    assert "k" not in c and c.stats().bytes == 0


def test_item_limit_evicts_lru(timer):
    c = make(timer, max_items=2)
    c.put("a", 1)
    c.put("b", 2)
    c.get("a")
    c.put("c", 3)
    assert set(c.keys()) == {"a", "c"}
    assert c.stats().evictions == 1


def test_estimate_size_counts_nested_values_and_shares_enums():
    h = hyp()
    assert estimate_size(h) > estimate_size("arsenal-fc::crm")
    assert estimate_size((h, h)) == estimate_size((h,)) + 8  # the second reference costs one pointer
    longer = hyp(entity="a-much-longer-entity-identifier-than-before")
    assert estimate_size(longer) > estimate_size(h)


# ------------------------------------------------------------------ invalidation


def test_invalidate_one_key(timer):
    c = make(timer)
    c.put("a", 1)
    assert c.invalidate("a") is True
    assert c.invalidate("a") is False
    assert c.stats().invalidations == 1


def test_invalidate_entity_drops_only_that_entitys_entries(timer):
    c = make(timer)
    c.put(("hyps", "arsenal-fc"), (hyp(),), entity_id="arsenal-fc")
    c.put(("hyp", "arsenal-fc::crm"), hyp(), entity_id="arsenal-fc")
    c.put(("hyps", "chelsea-fc"), (hyp("chelsea-fc"),), entity_id="chelsea-fc")
    assert c.invalidate_entity("arsenal-fc") == 2
    assert c.keys() == [("hyps", "chelsea-fc")]
    assert c.entity_keys("arsenal-fc") == set()


def test_entity_index_forgets_evicted_and_expired_entries(timer):
    c = make(timer, max_bytes=200, sizeof=unit_size, ttl_s=10)
    c.put("a", 1, entity_id="e1")
    c.put("b", 2, entity_id="e2")
    c.put("c", 3, entity_id="e3")  # evicts a
    assert c.entity_keys("e1") == set()
    timer.tick(11)
    c.purge_expired()
    assert c.entity_keys("e2") == set() and c.entity_keys("e3") == set()
    assert c._by_entity == {}


def test_invalidate_all_keeps_counters(timer):
    c = make(timer)
    c.put("a", 1)
    c.get("a")
    assert c.invalidate_all() == 1
    s = c.stats()
    assert (s.items, s.bytes, s.hits) == (0, 0, 1)


def test_replace_if_present_updates_only_live_entries(timer):
    c = make(timer)
    assert c.replace_if_present("a", 1) is False
    assert "a" not in c
    c.put("a", 1, entity_id="e")
    assert c.replace_if_present("a", 2) is True
    assert c.get("a") == 2 and c.entity_keys("e") == {"a"}


# ------------------------------------------------------------------ most accessed & recent


def test_most_accessed_ranks_by_hits(timer):
    c = make(timer)
    for k in "abc":
        c.put(k, k, entity_id=f"e-{k}")
    for k, n in (("a", 1), ("b", 5), ("c", 3)):
        for _ in range(n):
            c.get(k)
    top = c.most_accessed(2)
    assert [(t.key, t.hits, t.entity_id) for t in top] == [("b", 5, "e-b"), ("c", 3, "e-c")]


def test_recent_keys_most_recent_first_without_repeats(timer):
    c = make(timer)
    for k in ["a", "b", "a", "c", "b"]:
        c.get(k)
    assert c.recent_keys() == ["b", "c", "a"]
    assert c.recent_keys(limit=2) == ["b", "c"]
    assert c.access_counts()["a"] == 2


# ------------------------------------------------------------------ single-flight loads


def test_get_or_load_loads_once_then_hits(timer):
    c = make(timer)
    calls = []
    assert c.get_or_load("k", lambda: calls.append(1) or "v") == "v"
    assert c.get_or_load("k", lambda: calls.append(1) or "w") == "v"
    assert len(calls) == 1
    s = c.stats()
    assert (s.loads, s.hits, s.misses) == (1, 1, 1)


def test_concurrent_misses_of_one_key_run_the_loader_once(timer):
    c = make(timer)
    release = threading.Event()
    calls = []

    def loader():
        calls.append(threading.get_ident())
        assert release.wait(WAIT_S)
        return ("value",)

    n = 12
    results: list = [None] * n

    def worker(i):
        results[i] = c.get_or_load("hot", loader, entity_id="e")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    wait_until(lambda: c.stats().coalesced == n - 1, "all other callers to wait on the first load")
    release.set()
    for t in threads:
        t.join(WAIT_S)
    assert len(calls) == 1
    assert all(r is results[0] for r in results) and results[0] == ("value",)
    assert c.get("hot") == ("value",)


def test_loader_error_reaches_every_waiter_and_caches_nothing(timer):
    c = make(timer)
    release = threading.Event()

    def loader():
        assert release.wait(WAIT_S)
        raise RuntimeError("store down")

    errors = []

    def worker():
        try:
            c.get_or_load("k", loader)
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: c.stats().coalesced == 3, "waiters")
    release.set()
    for t in threads:
        t.join(WAIT_S)
    assert errors == ["store down"] * 4
    assert "k" not in c and c.stats().load_failures == 1
    assert c.get_or_load("k", lambda: "ok") == "ok"  # the failed load left no in-flight marker behind


@pytest.mark.parametrize(
    "invalidate",
    [
        lambda c: c.invalidate("k"),
        lambda c: c.invalidate_entity("e"),
        lambda c: c.invalidate_all(),
    ],
    ids=["key", "entity", "all"],
)
def test_load_that_raced_an_invalidation_is_returned_but_not_cached(timer, invalidate):
    c = make(timer)

    def loader():
        invalidate(c)  # a write lands while the (old) value is being read
        return "old"

    assert c.get_or_load("k", loader, entity_id="e") == "old"
    assert "k" not in c


def test_put_during_a_load_wins_over_the_loaded_value(timer):
    c = make(timer)

    def loader():
        c.put("k", "written", entity_id="e")
        return "read-before-write"

    c.get_or_load("k", loader, entity_id="e")
    assert c.get("k") == "written"


def test_load_guard_skips_keys_invalidated_during_a_bulk_load(timer):
    c = make(timer)
    with c.load_guard() as guard:
        c.invalidate_entity("e2")
        stored = guard.put_many([("a", 1, "e1"), ("b", 2, "e2")])
    assert stored == 1 and c.keys() == ["a"]
    assert c._inval_entity == {}  # marks are forgotten once no load runs


def test_threads_hammering_the_cache_keep_it_consistent(timer):
    c = make(timer, max_bytes=3_000, max_items=20)
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        try:
            for _ in range(2_000):
                k = rng.randint(0, 40)
                r = rng.random()
                if r < 0.4:
                    c.put(k, "v" * rng.randint(0, 100), entity_id=f"e{k % 5}")
                elif r < 0.8:
                    c.get_or_load(k, lambda: "loaded", entity_id=f"e{k % 5}")
                elif r < 0.9:
                    c.invalidate_entity(f"e{k % 5}")
                else:
                    c.get_many(range(k))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 3)
    assert errors == []
    s = c.stats()
    assert s.bytes == sum(c._data.getsizeof(cachetools.Cache.__getitem__(c._data, k)) for k in c.keys())  # noqa: SIM118 - not iterable
    assert s.items <= 20 and s.bytes <= 3_000
    assert c._inflight == {} and c._loads_running == 0


# ------------------------------------------------------------------ decorator


def test_cached_decorator_memoizes_per_argument_and_can_invalidate(timer):
    c = make(timer)
    calls = []

    @cached(c, entity=lambda entity_id: entity_id)
    def load(entity_id):
        calls.append(entity_id)
        return (entity_id.upper(),)

    assert load("a") == ("A",) and load("a") == ("A",) and load("b") == ("B",)
    assert calls == ["a", "b"]
    assert load.invalidate("a") is True
    load("a")
    assert calls == ["a", "b", "a"]
    c.invalidate_entity("b")
    load("b")
    assert calls == ["a", "b", "a", "b"]


def test_cached_decorators_sharing_a_cache_do_not_collide(timer):
    c = make(timer)

    @cached(c)
    def one(x):
        return ("one", x)

    @cached(c)
    def two(x):
        return ("two", x)

    assert one(1) == ("one", 1) and two(1) == ("two", 1)


def test_cached_decorator_single_flight_under_threads(timer):
    c = make(timer)
    release = threading.Event()
    calls = []

    @cached(c, key=lambda x: ("sq", x))
    def slow_square(x):
        calls.append(x)
        assert release.wait(WAIT_S)
        return x * x

    out = []
    threads = [threading.Thread(target=lambda: out.append(slow_square(9))) for _ in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: c.stats().coalesced == 5, "waiters")
    release.set()
    for t in threads:
        t.join(WAIT_S)
    assert calls == [9] and out == [81] * 6
