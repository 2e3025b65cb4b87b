"""`bench exporter` measures real scrapes of a throwaway ops DB and leaves nothing behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

from engine.bench.exporter import INCREMENT, bench_exporter


def test_the_benchmark_scrapes_its_own_data_dir_and_removes_it(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its throwaway dir lands here, where we can look
    lines: list[str] = []
    figures = bench_exporter(1_200, seed=3, print_fn=lines.append)
    assert figures["events"] == 1_200
    assert figures["response_bytes"] > 1_000 and figures["series"] > 50
    assert all(figures[k] > 0 for k in ("first_scrape_ms", "scrape_ms", "incremental_scrape_ms"))
    assert lines[0].startswith("inserted 1,200 metric events")
    assert any(f"after {INCREMENT:,} new events" in line for line in lines)
    assert list(Path(tmp_path).glob("bench-exporter-*")) == []
