"""Rotating JSONL log: rotation keeps N backups; two writer processes lose and tear no line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.core.errors import ConfigError
from engine.monitoring.jsonlog import JsonlLog

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.monitoring.jsonlog import JsonlLog
    path, writer = sys.argv[1], sys.argv[2]
    count, max_bytes, backups = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    log = JsonlLog(Path(path), max_bytes=max_bytes, backups=backups)
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go" so both writers start together
    i = 0
    while i < count:
        # batches of 1..3 lines with a padded payload so lines differ in length
        batch = [{"writer": writer, "seq": j, "pad": "x" * (j % 37)} for j in range(i, min(count, i + 1 + i % 3))]
        log.append(batch)
        i += len(batch)
    """
)


def _run_writers(path: Path, count: int, max_bytes: int, backups: int, repo: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(count), str(max_bytes), str(backups)],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for p in procs:  # both imported and constructed their log
        assert p.stdout.readline().strip() == "ready"
    for p in procs:  # release them back to back so their appends really overlap
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.stdin.close()
        assert p.wait(timeout=120) == 0


def _all_lines(log: JsonlLog) -> list[str]:
    lines = []
    for p in log.files():
        text = p.read_text(encoding="utf-8")
        assert text.endswith("\n"), f"{p.name} ends in a partial line"
        lines.extend(text.splitlines())
    return lines


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # starts or kills real processes
def test_two_writers_lose_and_tear_no_line_across_rotations(tmp_path):
    path = tmp_path / "logs" / "metrics.jsonl"
    count, max_bytes, backups = 1500, 4096, 200  # enough backups to keep every line: nothing may be missing
    _run_writers(path, count, max_bytes, backups, REPO)
    log = JsonlLog(path, max_bytes=max_bytes, backups=backups)

    lines = _all_lines(log)
    records = [json.loads(line) for line in lines]  # a torn line would not parse
    writers = [r["writer"] for r in records]
    switches = sum(1 for x, y in zip(writers, writers[1:]) if x != y)
    assert switches > 1, "the two writers did not overlap, so the test proved nothing"
    for writer in ("a", "b"):
        seqs = [r["seq"] for r in records if r["writer"] == writer]
        assert sorted(seqs) == list(range(count)), f"writer {writer} lost or duplicated lines"
        assert seqs == sorted(seqs), f"writer {writer}'s lines are out of order across files"
    files = log.files()
    assert len(files) > 10, "the test should have rotated many times"
    assert len(files) <= backups + 1
    for p in files:
        assert p.stat().st_size <= max_bytes


@pytest.mark.slow  # starts or kills real processes
def test_two_writers_keep_exactly_n_backups_and_whole_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    max_bytes, backups = 2048, 3
    _run_writers(path, 1200, max_bytes, backups, REPO)
    log = JsonlLog(path, max_bytes=max_bytes, backups=backups)
    assert [p.name for p in log.files()] == [
        "metrics.jsonl.3",
        "metrics.jsonl.2",
        "metrics.jsonl.1",
        "metrics.jsonl",
    ]
    assert not log.backup_path(4).exists()
    for line in _all_lines(log):
        record = json.loads(line)
        assert set(record) == {"writer", "seq", "pad"}
    # The kept lines are the newest: a line is only dropped with everything older, so each
    # writer keeps a contiguous tail of its lines ending at its last one (or nothing, when the
    # other writer ran on long enough after it finished to push all of its lines out), and
    # whoever wrote last kept its final line.
    records = list(log.read())
    assert records
    for writer in ("a", "b"):
        seqs = [r["seq"] for r in records if r["writer"] == writer]
        if seqs:
            assert seqs == list(range(seqs[0], 1200)), f"writer {writer} kept a gappy or truncated tail"
    assert records[-1]["seq"] == 1199


def test_rotation_keeps_the_newest_lines_contiguously(tmp_path):
    log = JsonlLog(tmp_path / "m.jsonl", max_bytes=200, backups=2)
    for i in range(100):
        log.write({"i": i})
    kept = [r["i"] for r in log.read()]
    assert kept == list(range(kept[0], 100)), "the kept lines must be the newest ones, in order"
    assert kept[0] > 0, "old lines beyond N backups must be dropped"
    assert len(log.files()) == 3


def test_a_batch_is_never_split_across_files(tmp_path):
    log = JsonlLog(tmp_path / "m.jsonl", max_bytes=100, backups=5)
    log.append([{"i": i} for i in range(3)])
    log.append([{"i": i, "big": "y" * 150} for i in range(3)])  # larger than max_bytes on its own
    assert [json.loads(x)["i"] for x in log.path.read_text().splitlines()] == [0, 1, 2]
    assert [json.loads(x)["i"] for x in log.backup_path(1).read_text().splitlines()] == [0, 1, 2]
    assert "big" not in log.backup_path(1).read_text()
    assert "big" in log.path.read_text()


def test_zero_backups_truncates_instead_of_keeping(tmp_path):
    log = JsonlLog(tmp_path / "m.jsonl", max_bytes=30, backups=0)
    for i in range(10):
        log.write({"i": i})
    assert log.files() == [log.path]
    assert [r["i"] for r in log.read()][-1] == 9


def test_records_with_newlines_and_unicode_stay_one_line(tmp_path):
    log = JsonlLog(tmp_path / "m.jsonl")
    log.write({"name": "Borussia\nMönchengladbach", "t": ("a", "b")})
    (line,) = log.path.read_text(encoding="utf-8").splitlines()
    assert json.loads(line) == {"name": "Borussia\nMönchengladbach", "t": ["a", "b"]}


def test_empty_append_creates_nothing(tmp_path):
    log = JsonlLog(tmp_path / "m.jsonl")
    assert log.append([]) == 0
    assert log.files() == []


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"backups": -1}])
def test_bad_sizes_are_config_errors(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        JsonlLog(tmp_path / "m.jsonl", **kwargs)
