"""A seeded data dir that AppTest consoles open through the environment, for page tests.

``seeded_console_env(tmp_path_factory, name, entities, seed)`` points
DISCOVERY_DATA_DIR at a fresh data dir holding a seeded catalogue and yields
``(settings, store)``. On exit it releases what the console opened in this
process (its shared Services and the cache service's thread), closes the
store and stops that dir's embedded FalkorDB.

``seed_hostile_console(settings, url)`` fills a data dir with texts that are
Markdown (a tracking-pixel image at ``url``, a script link, Streamlit
directives) wherever the console shows stored or typed text (issue 11, case 8);
``hostile_console_env`` is ``seeded_console_env`` for it. ``as_shown`` resolves
the escapes of what a page drew, to compare it with the text it carries.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from engine import rollout, tuning
from engine.catalogue.generator import seed_catalogue
from engine.catalogue.importer import import_file
from engine.catalogue.templates import load_templates
from engine.core.access import Role
from engine.core.model import Decision, Depth, HopRecord, HopType
from engine.core.settings import Settings, load_settings
from engine.discovery.entity_view import run_entity
from engine.jobs.queue import JobState, JobStore
from engine.monitoring import alerts
from engine.store import falkor
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.actors import as_role


@contextmanager
def seeded_console_env(tmp_path_factory, name: str, entities: int, seed: int) -> Iterator[tuple[Settings, GraphStore]]:
    data_dir = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISCOVERY_DATA_DIR", str(data_dir))
        mp.delenv("FALKORDB_URL", raising=False)
        mp.delenv("DISCOVERY_GRAPH", raising=False)
        settings = load_settings().ensure_dirs()
        store = GraphStore.open(settings)
        try:
            seed_catalogue(store, entities, seed=seed, templates=load_templates())
            yield settings, store
        finally:
            from console.services import _shared_service, _shared_services

            _shared_service.clear()  # stops the console's cache service thread
            _shared_services.clear()  # releases (closes) the console's own connection
            store.close()
            falkor.stop_embedded_server(settings)


def _release_console(settings: Settings) -> None:
    from console.services import _shared_service, _shared_services

    _shared_service.clear()  # stops the console's cache service thread
    _shared_services.clear()  # releases (closes) the console's own connection
    falkor.stop_embedded_server(settings)


# --------------------------------------------------------------------------- data that looks like Markdown

_ESCAPED = re.compile(r"\\(.)")


def as_shown(markdown: str) -> str:
    """What a person reads where Streamlit draws ``markdown`` made of escaped text (console.text.md_escape):
    the backslash escapes resolved. For comparing a page's messages with the text they carry."""
    return _ESCAPED.sub(r"\1", markdown)


def tracking_pixel(url: str, alt: str = "pixel") -> str:
    """Markdown for an image at ``url``: drawn as Markdown, the browser fetches ``url``."""
    return f"![{alt}]({url})"


#: a link whose target runs script when clicked, were it drawn as a link
SCRIPT_LINK = "[click](javascript:alert(1))"
#: Streamlit's own directives: red text and a Material icon, were they drawn as Markdown
DIRECTIVES = ":red[alarm] :material/warning:"


@dataclass(frozen=True)
class HostileData:
    """What ``seed_hostile_console`` stored; every text holds ``pixel`` (a tracking-pixel image in Markdown)."""

    pixel: str
    entity_id: str
    entity_name: str
    sport: str
    excerpt: str
    actor: str
    reason: str
    rule_ids: tuple[str, str]
    note: str
    study_name: str
    job_error: str
    run_id: int


def seed_hostile_console(settings: Settings, url: str, *, catalogue: int = 12) -> HostileData:
    """Fill the data dir of ``settings`` the way a hostile import, evaluator and operator would (issue 11, case 8).

    Through the engine's own entry points, no worker started: ``catalogue`` demo entities plus one
    imported entity named ``Evil ![pixel](url) FC`` (its sport a script link); a live discovery run on
    it (its metric event names it) and an evidence record whose url is a script link and whose excerpt
    is the pixel; a dry-run rollout started by an operator named with the pixel and rolled back with a
    reason holding the pixel, a script link and Streamlit directives (the run's message, its decision
    record, the audit log); two alert rules whose ids hold the pixel, both firing, one acknowledged with
    such a note; a tuning study of that name whose job failed with such an error.
    """
    pixel = tracking_pixel(url)
    name = f"Evil {pixel} FC"
    sport = f"Football {SCRIPT_LINK} {DIRECTIVES}"
    excerpt = f"Tender notice {pixel} <img src={url}> {SCRIPT_LINK}"
    actor = f"console:Mallory {pixel}"
    who = as_role(Role.ADMIN, key=actor)  # an identity whose key holds the pixel (pages must escape it)
    reason = f"cost up {pixel} {SCRIPT_LINK} {DIRECTIVES} $x^2$"
    rule_ids = (f"evil-{pixel}", f"acked {SCRIPT_LINK} {pixel}")
    note = f"on it {pixel} {SCRIPT_LINK}"
    study_name = f"study {pixel} {DIRECTIVES}"
    job_error = f"evaluator said {pixel} {SCRIPT_LINK}"

    ops = open_ops_db(settings)
    with GraphStore.open(settings) as graph:
        templates = load_templates()
        seed_catalogue(graph, catalogue, seed=11, templates=templates)
        source = settings.data_dir / "hostile-import.json"
        source.write_text(json.dumps([{"name": name, "sport": sport, "country": "Nowhere", "tier": 1}]))
        import_file(graph, source, templates)
        (entity,) = [e for e in graph.search_entities("Evil", limit=5) if e.name == name]
        run_entity(graph, ops, entity.id, actor=who, system="new")  # live: a metric event naming the entity
        hyp = graph.get_hypotheses(entity.id)[0]
        graph.add_evidence(
            entity.id,
            "hostile-run",
            "new",
            [
                HopRecord(
                    iteration=1,
                    hypothesis_id=hyp.id,
                    pattern=hyp.pattern,
                    category=hyp.category,
                    eig=0.1,
                    hop_type=HopType.PRESS_RELEASE,
                    depth=Depth.SURFACE,
                    decision=Decision.ACCEPT,
                    delta=0.0,
                    confidence_after=hyp.confidence,
                    cost_usd=0.01,
                    latency_s=0.5,
                    url="javascript:alert(1)",
                    excerpt=excerpt,
                )
            ],
        )
        run_id = rollout.start_rollout(
            settings, ops, stage="pilot", dry_run=True, actor=as_role("admin", actor), launch=False, graph=graph
        )
        rollout.rollback(settings, ops, run_id, as_role("admin", actor), reason, graph=graph)

    rule = {
        "metric": "cost_per_entity",
        "op": ">=",
        "threshold": 0,
        "hold": "0s",
        "min_sample": 1,
        "severity": "critical",
        "window": "1h",
        "system": "all",
        "runbook": f"read {pixel}",
    }
    alerts.save_rules(settings, [{**rule, "id": rid, "name": f"Rule {pixel}"} for rid in rule_ids], ops=ops, actor=who)
    alerts.evaluate_alerts(ops, alerts.load_rules(settings), time.time())
    alerts.acknowledge(ops, rule_ids[1], actor=who, now=time.time(), note=note)

    spec = tuning.StudySpec(
        method="random", iterations=2, entities=tuning.EntitySpec(kind="catalogue", n=20), name=study_name
    )
    study, job, _ = tuning.start_study(ops, settings, spec, actor=who, launch=False)
    jobs = JobStore(ops)
    claimed = jobs.claim(job.id)
    assert claimed is not None, f"job {job.id} of the hostile study could not be claimed"
    jobs.heartbeat(claimed, message=f"trial 1 {pixel}")
    jobs.finish(claimed, JobState.FAILED, error=job_error)
    return HostileData(
        pixel=pixel,
        entity_id=entity.id,
        entity_name=name,
        sport=sport,
        excerpt=excerpt,
        actor=actor,
        reason=reason,
        rule_ids=rule_ids,
        note=note,
        study_name=study_name,
        job_error=job_error,
        run_id=run_id,
    )


@contextmanager
def hostile_console_env(tmp_path_factory, name: str, url: str) -> Iterator[tuple[Settings, HostileData]]:
    """DISCOVERY_DATA_DIR at a fresh data dir filled by ``seed_hostile_console``; yields (settings, what it stored).
    On exit the console's shared stores are released and the dir's embedded FalkorDB stopped."""
    data_dir = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISCOVERY_DATA_DIR", str(data_dir))
        mp.delenv("FALKORDB_URL", raising=False)
        mp.delenv("DISCOVERY_GRAPH", raising=False)
        settings = load_settings().ensure_dirs()
        try:
            yield settings, seed_hostile_console(settings, url)
        finally:
            _release_console(settings)
