"""The shipped stage table at a small scale, for rollout tests."""

from __future__ import annotations

import json
from pathlib import Path

SHIPPED_STAGES = json.loads((Path(__file__).resolve().parents[2] / "data" / "stages.json").read_text())


def stage_table(
    tmp_path: Path,
    *,
    counts=(10, 30, "all"),
    min_days=(0.5, 0.5, 0.5),
    batch=(5, 10, 10),
    min_sample=(5, 10, 10),
    lenient=True,
    loose_triggers=False,
    four_eyes=(),
    drop=(),
    bake_days=None,
    name="stages.json",
) -> Path:
    """The shipped stage table at a small scale. ``lenient``: success criteria every honest run clears
    (the shipped thresholds ask for a 15-25% cost cut, which is a property of the candidate, not of the runner).
    ``four_eyes``: the stages that need a second approver (default none, so the worker promotes every stage by
    itself as the mechanics tests expect; the shipped table sets it for production). ``drop``: stages left out
    (``("limited",)``: pilot straight into production). ``bake_days``: the last stage's bake (default: shipped)."""
    data = json.loads(json.dumps(SHIPPED_STAGES))
    for s, c, d, b, m in zip(data["stages"], counts, min_days, batch, min_sample):
        s.update(entities=c, min_duration_days=d, batch_size=b, min_sample=m, four_eyes=s["name"] in four_eyes)
        if lenient:
            s["test"] = "point"
            s["success"] = [
                {"metric": "error_rate_pct", "op": "<", "threshold": 50},
                {"metric": "p95_latency_ms", "op": "<", "threshold": 60000},
            ]
        if loose_triggers:  # for tests of the mechanics after a pass: only a gross cost increase fails
            s["rollback"] = [{"metric": "cost_increase_pct", "op": ">", "threshold": 200}]
    data["stages"] = [s for s in data["stages"] if s["name"] not in drop]
    if bake_days is not None:
        data["stages"][-1]["bake_days"] = bake_days
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path
