"""`bench tuning --workers`: a real-engine study in this process and on a local Dask cluster, its figures
printed (wall times, ratio, best trial, overhead, projection), and its flags checked in one line."""

from __future__ import annotations

import pytest

from engine.bench.tuning import ScaleRow, scale_projection
from engine.cli.main import main


@pytest.mark.slow
def test_bench_tuning_with_workers_runs_a_real_study_per_setting(capsys):
    argv = ["bench", "tuning", "--workers", "1,2", "--entities", "30", "--iterations", "2"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "real-engine random study: 30 catalogue entities" in text
    for label in ("in-process", "Dask, 1 worker(s)", "Dask, 2 worker(s)"):
        line = next(ln for ln in text.splitlines() if ln.startswith(label))
        assert "wall" in line and "same best trial" in line, line  # random points do not depend on parallelism
    assert "Dask with 1 worker: wall" in text and "2 workers: x" in text
    assert "projected throughput" in text and "ceiling" in text


def test_the_projection_follows_the_measured_costs():
    def row(label, workers, dask, wall, startup, unit_s):
        return ScaleRow(label, workers, dask, wall, startup, 10, unit_s, 1, (), 1)

    rows = [
        row("in-process", 1, False, 12.0, 0.0, 10.0),  # 1.0 s per unit, 0.2 s coordinator per evaluation
        row("Dask, 1 worker(s)", 1, True, 13.0, 1.0, 0.0),  # 1.2 s per evaluation: 0.2 s Dask overhead
        row("Dask, 2 worker(s)", 2, True, 7.0, 1.0, 0.0),
    ]
    text = "\n".join(scale_projection(rows))
    assert "1000 ms in the unit, 200 ms in the coordinator" in text
    assert "+200 ms per evaluation" in text
    assert "2 workers: x1.71 vs in-process, x1.86 vs Dask with 1 worker" in text
    # N=2, grid/random: max(0.2, 1.2 / 2) = 0.6 s -> 1.67 evaluations/s; bayesian 0.2 + 0.6 -> 1.25
    two = next(ln for ln in text.splitlines() if ln.startswith("    2 "))
    assert two.split()[1:] == ["1.67", "7.0", "1.25", "9.0"], two
    assert "ceiling: 5.00 evaluations/s" in text and "N = 6 workers" in text


@pytest.mark.parametrize(
    "value, message", [("0", "--workers must be a whole number from 1 to 64"), ("1,x", "'x' is not")]
)
def test_bad_worker_lists_are_one_line_errors(capsys, value, message):
    assert main(["bench", "tuning", "--workers", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_a_measured_round_trip_is_the_overhead_the_projection_uses():
    rows = [
        ScaleRow("in-process", 1, False, 12.0, 0.0, 10, 10.0, 1, (), 1),
        ScaleRow("Dask, 1 worker(s)", 1, True, 13.0, 1.0, 10, 0.0, 1, (), 1, round_trip_s=0.05),
    ]
    text = "\n".join(scale_projection(rows))
    assert "50 ms from submit to result" in text and "Dask 50 ms per evaluation" in text
    # N=1, grid/random: max(0.2, 1.05) -> 0.95 evaluations/s
    one = next(ln for ln in text.splitlines() if ln.startswith("    1 "))
    assert one.split()[1] == "0.95", one
