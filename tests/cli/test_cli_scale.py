"""`python -m engine bench scale` with tiny figures: the table and the JSON parse, and every concurrency gives
the same per-entity results."""

from __future__ import annotations

import json
import re

import pytest

from engine.bench.scale import projected_pass_h, rollout_rate
from engine.cli.main import main

TINY = ["bench", "scale", "--entities", "6", "--concurrency", "1,4", "--latency-factor", "0.002"]


def test_json_figures_parse_and_results_are_the_same_at_every_concurrency(capsys):
    assert main([*TINY, "--rollout-entities", "0", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    rows = {r["concurrency"]: r for r in figures["rows"]}
    assert sorted(rows) == [1, 4] and figures["ok"] is True and figures["rollout"] is None
    assert rows[1]["identical"] and rows[4]["identical"] and rows[4]["differing_entities"] == 0
    assert rows[1]["hops"] == rows[4]["hops"] > 6  # the same hops, several per entity
    assert rows[1]["peak_in_flight"] == 1 and 2 <= rows[4]["peak_in_flight"] <= 4
    assert rows[1]["speedup"] == 1.0
    for r in rows.values():
        assert r["projected_pass_h"] == pytest.approx(projected_pass_h(r["wall_s"], 0.002, 6))
    assert figures["peak_rss_mib"] > 0 and "3,400 / N" in figures["projection"]


def test_the_table_prints_one_row_per_concurrency(capsys):
    assert main([*TINY, "--rollout-entities", "0"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(
        r"^\s+(\d+)\s+[\d.]+\s+[\d,]+\s+[\d.]+\s+[\d.]+x\s+[\d.]+\s+(\d+)\s+\d+\s+(\S+)\s+[\d.]+ h$", out, re.M
    )
    assert [(c, same) for c, _, same in rows] == [("1", "yes"), ("4", "yes")], out
    assert "projected pass = (wall / latency factor) x 3,400 / N" in out
    assert re.search(r"peak RSS of this process: [\d,]+ MiB", out)


def test_projection_formula():
    # 10 s at a factor 0.01 for 200 entities: 1,000 s of real latency for 200, x 17 for 3,400 = 17,000 s
    assert projected_pass_h(10.0, 0.01, 200) == pytest.approx(17_000 / 3600)


def test_the_rollout_benchmarks_stage_lines_are_read():
    tail = " discovery runs/s); 1 trigger checks; engine p95 1.71 ms"
    lines = [
        "rollout 1: completed (succeeded) in 61.0 s; stages of the shipped table",
        "  pilot          10 entities in     0.5 s =   21.2 paired entities/s (  42.4" + tail,
        "  production   3400 entities in    10.1 s =  336.6 paired entities/s ( 673.2" + tail,
        "  limited       100 entities in     1.4 s =   71.4 paired entities/s ( 142.8" + tail,
    ]
    assert rollout_rate(lines) == ("production", 3400, 336.6)
    assert rollout_rate(lines[:2]) == ("pilot", 10, 21.2)
    assert rollout_rate(["nothing measured"]) is None


@pytest.mark.slow
def test_with_the_rollout_runner(capsys):
    """The rollout part calls the rollout benchmark itself; its production (here: last) stage rate is read."""
    assert main([*TINY, "--concurrency", "1,2", "--rollout-entities", "30", "--json"]) == 0
    rollout = json.loads(capsys.readouterr().out)["rollout"]
    assert rollout["succeeded"] is True and rollout["paired_entities_per_s"] > 0
    assert rollout["stage"] in ("limited", "production") and rollout["lines"]


def test_bad_concurrency_lists_are_one_line_errors(capsys):
    for bad in ("1,1", "0,4", "1,300", ","):
        assert main(["bench", "scale", "--concurrency", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1 and "--concurrency" in err
