"""A job handler that takes the operations database's write lock and keeps it (for the frozen-worker tests):
run by a real ``python -m engine worker --job ID`` so it looks like any worker to the reaper."""

from __future__ import annotations

import time
from pathlib import Path


def hold_the_write_lock(ctx) -> dict:
    """Open a write transaction, say so in the file ``params["ready"]``, then sleep inside it."""
    with ctx.ops.transaction() as db:
        db.execute("UPDATE jobs SET message = 'holding the write lock' WHERE id = ?", [ctx.job.id])
        Path(ctx.params["ready"]).write_text("holding")
        time.sleep(600)
    return {}
