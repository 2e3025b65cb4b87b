"""Scraping the Prometheus exporter as Prometheus does: HTTP GET /metrics, parsed with prometheus_client's parser."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from engine.core.settings import Settings
from engine.notify.exporter import ExporterServer, OpsCollector


@contextmanager
def exporter_on(settings: Settings) -> Iterator[ExporterServer]:
    """An exporter of ``settings``' data dir serving on a free loopback port (a thread of this process)."""
    server = ExporterServer(OpsCollector.for_settings(settings), host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        server.stop()


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (sample name, sorted labels) -> value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def family_samples(text: str, name: str) -> list[Sample]:
    """The samples of the family ``name`` (an empty list when it is not served)."""
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return list(family.samples)
    return []


def served_names(text: str) -> set[str]:
    """Every name a query may use: the families and their sample names (``_total``, ``_bucket``, ...)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels`` (None when there is none)."""
    return samples(text).get((name, tuple(sorted(labels.items()))))
