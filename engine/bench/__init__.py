"""Benchmarks behind `python -m engine bench ...`: each measures in a throwaway data dir and prints
figures and ratios from one run (store, graph, discovery, entity view, cache sync, monitor, rollout, tuning).

See the README's Architecture section for how the areas fit together.
"""

from engine.core.access import SYSTEM, Actor, Role

#: who a benchmark acts as: the engine itself in its throwaway data dir (recorded as ``bench``)
BENCH = Actor("bench", Role.ADMIN, SYSTEM)

__all__ = ["BENCH"]
