"""Tables of the cache area (listed in opsdb.COMPONENT_MODULES): the history of warming rounds.

The cache itself lives in the memory of the process that reads through it
(the console, a worker); what is worth keeping across restarts is when it was
warmed, by what, and how much that loaded (engine.cache.warmer.record_warm_run).
Benchmark results are kept as the result of their job (engine.jobs.queue).
"""

from __future__ import annotations

from engine.store.opsdb import Migration

MIGRATIONS: list[Migration] = [
    Migration(
        "cache",
        1,
        "warm runs",
        (
            """
            CREATE TABLE IF NOT EXISTS cache_warm_runs (
                id INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                pid INTEGER NOT NULL,
                trigger TEXT NOT NULL,
                planned INTEGER NOT NULL,
                loaded INTEGER NOT NULL,
                already_cached INTEGER NOT NULL,
                elapsed_s REAL NOT NULL,
                signals TEXT NOT NULL DEFAULT '{}',
                error TEXT
            )
            """,
            "CREATE INDEX IF NOT EXISTS idx_cache_warm_runs_at ON cache_warm_runs (at)",
        ),
    )
]
