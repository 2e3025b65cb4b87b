"""docs/grafana-dashboard.json and docs/prometheus.yml: valid, and every metric and label the dashboard's queries
name is one the exporter really serves (scraped from a data dir with runs, alerts, a rollout, a study, the cache)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from engine.cache.service import CacheService
from engine.core.settings import REPO_ROOT
from engine.discovery.runs import run_entities
from engine.monitoring import alerts as alerts_mod
from engine.notify.exporter import DEFAULT_PORT, METRICS_PATH
from engine.production.control import start_production
from engine.production.scheduler import Scheduler
from engine.tuning.spec import EntitySpec, StudySpec
from engine.tuning.store import create_study
from tests.support.actors import ADMIN
from tests.support.monitoring_data import FakeClock
from tests.support.rollouts import run_pilot_here
from tests.support.scrape import exporter_on, scrape_text, served_names

DASHBOARD = REPO_ROOT / "docs" / "grafana-dashboard.json"
SCRAPE_CONFIG = REPO_ROOT / "docs" / "prometheus.yml"

METRIC_NAME = re.compile(r"\bdiscovery_[a-z0-9_]+")
#: label names inside `by (...)`, `on (...)`, `without (...)` and selectors `{name="..."}`
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
#: labels Prometheus itself adds to every series it scrapes (the scrape config adds ``service``)
TARGET_LABELS = {"job", "instance", "service"}


def dashboard_queries(dashboard: dict) -> list[str]:
    """Every PromQL text of the dashboard: panel targets and template variable queries."""
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["definition"])
    return queries


def query_labels(query: str) -> set[str]:
    names = {name.strip() for group in GROUPING.findall(query) for name in group.split(",") if name.strip()}
    return names | set(MATCHER.findall(query))


def test_the_dashboard_is_valid_json_with_targets_on_every_panel():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
    titles = " ".join(p["title"].lower() for p in panels)
    for needed in ("runs", "cost", "error rate", "actionable rate", "p95", "alert", "rollout progress"):
        assert needed in titles, needed
    p95 = next(p for p in panels if "p95" in p["title"])
    assert "histogram_quantile(0.95" in p95["targets"][0]["expr"]
    assert "discovery_run_latency_seconds_bucket" in p95["targets"][0]["expr"]


def test_the_checks_catch_a_name_or_label_the_exporter_does_not_serve():
    assert METRIC_NAME.findall("sum by (sytem) (rate(discovery_run_total[5m]))") == ["discovery_run_total"]
    assert query_labels('sum by (sytem, le) (x{stage=~"$stage"})') == {"sytem", "le", "stage"}


@pytest.fixture
def scraped(settings, ops, seed_graph, tmp_path) -> str:
    """The exposition of a data dir with every kind of figure: runs, alerts, a rollout, a study, the cache, a batch
    of the production scheduler."""
    graph = seed_graph(60, 7)
    clock = FakeClock()
    ids = graph.list_entity_ids()
    run_entities(graph, ops, ids[:10], system="new", stage_id="production", clock=clock)
    run_pilot_here(settings, ops, graph, tmp_path)
    alerts_mod.evaluate_alerts(ops, alerts_mod.load_rules(settings), clock.now)
    spec = StudySpec(method="random", params=("max_iterations",), iterations=2, entities=EntitySpec(n=40))
    create_study(ops, spec, actor=ADMIN)
    service = CacheService(graph, ops)
    service.cached.get_hypotheses(ids[0])
    service.publish()
    prod = start_production(settings, ops, budget_usd=5.0, batch_size=5, actor=ADMIN, launch=False)
    assert Scheduler(graph, ops, prod).step().kind == "ran"
    with exporter_on(settings) as server:
        return scrape_text(server.url)


def test_every_metric_and_label_the_dashboard_queries_is_served(scraped):
    served = served_names(scraped)
    with_samples = {s.name for f in text_string_to_metric_families(scraped) for s in f.samples}
    labels = {name for f in text_string_to_metric_families(scraped) for s in f.samples for name in s.labels}
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    used = {name for q in queries for name in METRIC_NAME.findall(q)}
    assert used, "the dashboard queries no metric of the exporter"
    assert used - served == set()
    assert used - with_samples - {n.removesuffix("_bucket") for n in with_samples} == set(), "a family with no data"
    used_labels = {label for q in queries for label in query_labels(q)}
    assert used_labels - labels - TARGET_LABELS == set()


def test_the_scrape_config_points_at_the_exporter():
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == METRICS_PATH
    (static,) = job["static_configs"]
    assert static["targets"] == [f"127.0.0.1:{DEFAULT_PORT}"]
    assert set(static.get("labels", {})) <= TARGET_LABELS


def test_docs_name_the_files():
    readme = (REPO_ROOT / "README.md").read_text()
    for path in (DASHBOARD, SCRAPE_CONFIG):
        assert str(Path(path).relative_to(REPO_ROOT)) in readme
