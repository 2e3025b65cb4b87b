"""`python -m engine report` / `alerts` / `bench monitor` against a real data dir."""

from __future__ import annotations

import json
import re
import time

import pytest

from engine.cli.main import build_parser, main
from engine.monitoring.alerts import load_rules, rules_path, save_rules
from engine.monitoring.events import record_runs
from engine.monitoring.jsonlog import JsonlLog
from engine.store.access import grant
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN
from tests.support.monitoring_data import make_run


@pytest.fixture
def data_dir(settings, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("FALKORDB_URL", raising=False)
    return settings


def _record(settings, results, names=None):
    # The CLI reports on "now", so these events are stamped with the real clock.
    record_runs(
        open_ops_db(settings), results, run_id="cli", clock=time.time, log=JsonlLog.for_settings(settings), names=names
    )


def test_every_monitoring_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("report", "alerts"):
        assert sub.choices[name].description and sub.choices[name].format_help()
    bench = next(a for a in sub.choices["bench"]._actions if a.dest == "bench")
    assert "monitor" in bench.choices and bench.choices["monitor"].description


def test_report_markdown_to_stdout(data_dir, capsys):
    _record(data_dir, [make_run("a", cost=0.25), make_run("b", system="old", cost=0.5)])
    assert main(["report", "--window", "15m"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Discovery Ops report: last 15m")
    assert "| runs (entities) | 1 (1) | 1 (1) | 2 (2) |" in out
    assert "reduction +50.0% (old n=1, new n=1)" in out


def test_report_html_to_a_directory_gets_a_dated_name(data_dir, tmp_path, capsys):
    _record(data_dir, [make_run("a")], names={"a": "<b>A</b>"})
    out_dir = tmp_path / "reports"
    out_dir.mkdir()
    assert main(["report", "--format", "html", "--window", "24h", "-o", str(out_dir)]) == 0
    (written,) = list(out_dir.iterdir())
    assert re.fullmatch(r"discovery-report-\d{4}-\d\d-\d\dT\d{4}Z-24h\.html", written.name)
    page = written.read_text()
    assert "&lt;b&gt;A&lt;/b&gt;" in page and "<b>A</b>" not in page
    assert f"wrote {written}" in capsys.readouterr().out


def test_report_json_to_a_file(data_dir, tmp_path):
    _record(data_dir, [make_run("a", errors=("timeout",))])
    target = tmp_path / "r.json"
    assert main(["report", "--format", "json", "--window", "1h", "-o", str(target)]) == 0
    data = json.loads(target.read_text())
    assert data["window"]["label"] == "1h" and data["by_system"]["new"]["errors_by_type"] == {"timeout": 1}


def test_a_bad_window_is_a_one_line_error(data_dir, capsys):
    assert main(["report", "--window", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "e.g. 15m, 24h or 7d" in err


def test_alerts_before_and_after_evaluation(data_dir, capsys):
    assert main(["alerts"]) == 0
    out = capsys.readouterr().out
    assert "no alert evaluated yet" in out and "not evaluated" in out
    assert main(["alerts", "--evaluate", "--rules"]) == 0
    out = capsys.readouterr().out
    assert "rules from" in out and "error rate > 10.0% over the last hour" in out
    assert out.count("no_data") == 5  # an empty store is no data for every rule, not ok


def test_alerts_firing_exits_one_and_can_be_acknowledged(data_dir, capsys, monkeypatch):
    monkeypatch.setattr("engine.cli.common.os_user", lambda: "test")  # the CLI acts as cli:<OS user>
    rules = load_rules(data_dir)
    fast = [r.to_json() | ({"hold": "0s", "min_sample": 2} if r.id == "error-rate" else {}) for r in rules]
    save_rules(data_dir, fast, ops=open_ops_db(data_dir), actor=ADMIN)
    assert rules_path(data_dir).exists()
    _record(data_dir, [make_run(f"e{i}", hops=4, errors=("timeout",) * 2) for i in range(3)])
    assert main(["alerts", "--evaluate", "--history", "10"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^error-rate\s+firing", out, re.M)
    assert main(["alerts", "--ack", "error-rate", "--note", "looking"]) == 1
    assert "acknowledged error-rate (firing" in capsys.readouterr().out
    assert main(["alerts", "--json"]) == 1
    states = json.loads(capsys.readouterr().out)["states"]
    assert states["error-rate"]["acknowledged_by"] == "cli:test"
    assert open_ops_db(data_dir).list_audit(action="alert.acknowledge")[0]["actor"] == "cli:test"


def test_a_cli_user_without_the_role_is_refused_in_one_line(data_dir, capsys, monkeypatch):
    monkeypatch.setattr("engine.cli.common.os_user", lambda: "mallory")
    grant(open_ops_db(data_dir), ADMIN, "cli:root", "admin")  # a role map exists: mallory is not in it (viewer)
    assert main(["alerts", "--evaluate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "alerts.evaluate needs the operator role; cli:mallory is a viewer" in err and "\n" not in err
    assert main(["alerts"]) == 0  # reading needs no role
    assert open_ops_db(data_dir).list_audit(action="alerts.evaluate") == []


def test_acknowledging_an_unknown_alert_is_a_one_line_error(data_dir, capsys):
    assert main(["alerts", "--ack", "nope"]) == 2
    assert "evaluate first" in capsys.readouterr().err


def test_bench_monitor_prints_measured_figures(capsys):
    assert main(["bench", "monitor", "--events", "200", "--batch", "20"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"recorded 200 events in [\d.]+s", out)
    assert re.search(r"summarize  7d:\s+200 events", out)
    assert re.search(
        r"live charts refresh 7d: [\d.]+ ms for 200 events \(summarize \+ time_series: [\d.]+ ms; [\d.]+x\)", out
    )
    for fmt in ("md", "json", "html"):
        assert re.search(rf"render\s+{fmt}: .* bytes", out)
