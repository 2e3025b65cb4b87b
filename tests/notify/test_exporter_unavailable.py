"""When the ops DB cannot be read, a scrape still answers 200 with discovery_opsdb_up 0 and one error line,
never a traceback and never half the families; once the database is back, the next scrape is whole again."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from engine.monitoring.events import events_of_runs, record_events
from engine.monitoring.jsonlog import JsonlLog
from engine.store.opsdb import OpsDB
from tests.support.monitoring_data import make_run
from tests.support.scrape import exporter_on, family_samples, scrape_text, value


def _down(text: str) -> str:
    """Assert the down answer; the error line."""
    assert value(text, "discovery_opsdb_up") == 0.0
    assert "Traceback" not in text
    (info,) = family_samples(text, "discovery_opsdb_error_info")
    assert info.value == 1.0 and "\n" not in info.labels["error"]
    # never half the families: only the up gauge, the error and the scrape's duration
    assert {f.name for f in text_string_to_metric_families(text)} == {
        "discovery_opsdb_up",
        "discovery_opsdb_error_info",
        "discovery_exporter_scrape_duration_seconds",
    }
    return info.labels["error"]


def test_no_ops_db_gives_up_0_with_the_reason_and_creates_nothing(settings):
    assert not settings.ops_db_path.exists()
    with exporter_on(settings) as server:
        error = _down(scrape_text(server.url))
    assert "no operations database" in error and str(settings.ops_db_path) in error
    assert "DISCOVERY_DATA_DIR" in error
    assert not settings.ops_db_path.exists()  # the exporter only reads


def test_the_exporter_comes_up_when_the_ops_db_appears(settings):
    with exporter_on(settings) as server:
        _down(scrape_text(server.url))
        ops = OpsDB(settings.ops_db_path)
        record_events(
            ops,
            events_of_runs([make_run("e-1")], run_id="r", stage_id="production", at=1.0),
            log=JsonlLog.for_settings(settings, "metrics"),
        )
        text = scrape_text(server.url)
    assert value(text, "discovery_opsdb_up") == 1.0
    assert family_samples(text, "discovery_opsdb_error_info") == []
    assert value(text, "discovery_runs_total", system="new", stage="production", shadow="false") == 1.0


def test_a_file_that_is_not_a_database_gives_up_0(settings):
    settings.ops_db_path.write_bytes(b"this is not an SQLite file\n" * 200)
    with exporter_on(settings) as server:
        error = _down(scrape_text(server.url))
    assert "database" in error


def test_an_ops_db_that_goes_away_after_a_good_scrape_gives_up_0_then_back(settings, ops):
    record_events(
        ops, events_of_runs([make_run("e-1")], run_id="r", at=1.0), log=JsonlLog.for_settings(settings, "metrics")
    )
    moved = settings.ops_db_path.with_name("elsewhere.sqlite")
    with exporter_on(settings) as server:
        assert value(scrape_text(server.url), "discovery_opsdb_up") == 1.0
        settings.ops_db_path.rename(moved)
        _down(scrape_text(server.url))
        moved.rename(settings.ops_db_path)
        text = scrape_text(server.url)
    assert value(text, "discovery_opsdb_up") == 1.0
    assert value(text, "discovery_runs_total", system="new", stage="none", shadow="false") == 1.0


def test_other_paths_are_404_and_the_root_points_at_metrics(settings, ops):
    with exporter_on(settings) as server:
        root = server.url.removesuffix("/metrics") + "/"
        with urllib.request.urlopen(root, timeout=30) as resp:
            assert b"/metrics" in resp.read()
        try:
            urllib.request.urlopen(root + "nothing", timeout=30)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        else:
            raise AssertionError("an unknown path answered 200")
