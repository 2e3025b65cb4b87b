"""Many entities in flight: an ordered map over a pool of threads.

One entity's hops stay in order (each hop depends on the last decision), so
the unit of work is one entity's whole run; what runs at once is many
entities. The work is waiting on an evaluator (a socket, a sleep), which
releases the GIL, so threads are the right tool: 32 entities in flight wait
32 evaluators' latencies at once on one core. With ``concurrency`` 1 nothing
is threaded: the items run in the caller's thread, in order.

``map_in_flight`` returns one ``Done`` per item, in the order given, whatever
order they finished in. An item that raises one of ``stop_on`` (the
machinery failing: the store, the evaluator, a lost lease) stops the map:
nothing more is started, the runs already in flight finish (an evaluator's
request that may have been charged is never abandoned half way), and the
items never started come back with ``started=False``. Any other exception of
an item is kept with it and the map goes on.

``tick(finished)`` is called from the caller's thread at least every
``tick_s`` seconds while it waits (a job's heartbeat and progress: the
worker's lease stays alive through a long batch without a database write per
entity). If ``tick`` raises (a cancel, a lost lease), nothing more is started,
the runs in flight finish, and the exception propagates.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.discovery.limits import MAX_CONCURRENCY, check_whole

#: how often (s) the caller's ``tick`` runs while it waits for a batch
TICK_S = 1.0


@dataclass(frozen=True)
class Done[R]:
    """What became of one item: its value, or the exception it raised, or never started (the map stopped)."""

    value: R | None = None
    error: BaseException | None = None
    started: bool = True

    @property
    def ok(self) -> bool:
        return self.started and self.error is None


def in_flight_for(source: object, concurrency: int) -> int:
    """Entities to keep in flight against ``source``: ``concurrency``, or 1 for a source that never waits
    (``source.waits`` False: the simulated world in virtual time, a replay file), whose hops are pure CPU
    work that threads would only slow down under the GIL. The answers are the same either way."""
    return concurrency if getattr(source, "waits", True) else 1


def check_concurrency(concurrency: object, what: str = "--concurrency") -> int:
    """``concurrency`` as an int in 1..MAX_CONCURRENCY (engine.discovery.limits); a one-line ConfigError otherwise."""
    return check_whole(concurrency, what, MAX_CONCURRENCY)


def map_in_flight[T, R](
    fn: Callable[[T], R],
    items: Sequence[T],
    concurrency: int = 1,
    *,
    stop_on: tuple[type[BaseException], ...] = (),
    tick: Callable[[int], None] | None = None,
    tick_s: float = TICK_S,
) -> list[Done[R]]:
    """``fn`` over ``items``, at most ``concurrency`` at once; one Done per item, in input order."""
    check_concurrency(concurrency)
    if concurrency == 1 or len(items) <= 1:
        return _inline(fn, items, stop_on, tick, tick_s)
    done: dict[int, Done[R]] = {}
    with cf.ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="entity") as pool:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        pending = set(futures)
        last = time.monotonic()
        try:
            while pending:
                finished, pending = cf.wait(pending, timeout=tick_s, return_when=cf.FIRST_COMPLETED)
                stop = False
                for f in finished:
                    exc = f.exception()
                    done[futures[f]] = Done(error=exc) if exc is not None else Done(value=f.result())
                    stop = stop or (exc is not None and isinstance(exc, stop_on))
                if stop:
                    break
                if tick is not None and time.monotonic() - last >= tick_s:
                    tick(len(done))
                    last = time.monotonic()
        finally:
            # nothing more starts; what is in flight finishes (the pool's exit waits for it)
            for f in pending:
                f.cancel()
        for f in pending:
            if f.cancelled():
                done[futures[f]] = Done(started=False)
            else:
                exc = f.exception()
                done[futures[f]] = Done(error=exc) if exc is not None else Done(value=f.result())
    return [done[i] for i in range(len(items))]


def _inline[T, R](
    fn: Callable[[T], R],
    items: Sequence[T],
    stop_on: tuple[type[BaseException], ...],
    tick: Callable[[int], None] | None,
    tick_s: float,
) -> list[Done[R]]:
    out: list[Done[R]] = []
    last = time.monotonic()
    for item in items:
        try:
            out.append(Done(value=fn(item)))
        except Exception as exc:  # noqa: BLE001 - kept with its item; the caller decides
            out.append(Done(error=exc))
            if isinstance(exc, stop_on):
                break
        if tick is not None and time.monotonic() - last >= tick_s:
            tick(len(out))
            last = time.monotonic()
    out.extend(Done(started=False) for _ in range(len(items) - len(out)))
    return out
