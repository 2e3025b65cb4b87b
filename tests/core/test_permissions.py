"""Every state-changing engine function refuses an actor without the role it needs: one table, one test per row.

``CASES`` has a row per state-changing function: the action it performs (a key of
``engine.core.access.ACTIONS``) and a call with throw-away arguments. The engine checks
the actor before it looks at anything else, so the call is refused with
PermissionDenied before it could fail for any other reason. Two further tests keep
the table whole: every action has a row, and every public engine function that takes
an ``actor`` is in the table or in ``NOT_GATED`` with the reason it needs no check.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine import rollout as ro
from engine.cache import service as cache_service
from engine.catalogue import generator, importer
from engine.core import configs
from engine.core.access import ACTIONS, PermissionDenied, Role
from engine.core.params import ParameterConfig
from engine.core.settings import Settings
from engine.discovery import demo, entity_view
from engine.monitoring import alert_jobs, alerts
from engine.notify import sender as notify_sender
from engine.notify import store as ns
from engine.production import control as production
from engine.production.budget import DEFAULT_DAILY_BUDGET_USD
from engine.rollout import guardrails as gr
from engine.rollout.stages import save_stage_config
from engine.store import access
from engine.store.opsdb import open_ops_db
from engine.tuning import outputs as tuning_outputs
from engine.tuning import runner as tuning_runner
from engine.tuning import store as tuning_store
from tests.support.actors import as_role

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    function: str  # module:qualname, as the source scan names it
    action: str
    call: Callable[[Any, Settings, Any], object]  # (ops, settings, actor)


# --------------------------------------------------------------------------- the table
# Add a row for every state-changing engine function; group rows by package.
CASES: list[Case] = [
    # access (engine.store.access)
    Case(
        "engine.store.access:grant", "access.assign", lambda ops, s, a: access.grant(ops, a, "x@example.com", "admin")
    ),
    Case("engine.store.access:remove", "access.assign", lambda ops, s, a: access.remove(ops, a, "x@example.com")),
    Case(
        "engine.store.access:revoke_sessions",
        "access.revoke_sessions",
        lambda ops, s, a: access.revoke_sessions(ops, a, "x@example.com"),
    ),
    Case("engine.store.access:seed", "access.assign", lambda ops, s, a: access.seed(ops, a, s.data_dir / "none.json")),
    # rollout (engine.rollout)
    Case("engine.rollout.control:start_rollout", "rollout.start", lambda ops, s, a: ro.start_rollout(s, ops, actor=a)),
    Case("engine.rollout.control:pause", "rollout.pause", lambda ops, s, a: ro.pause(ops, None, a)),
    Case("engine.rollout.control:resume", "rollout.resume", lambda ops, s, a: ro.resume(ops, None, a, settings=s)),
    Case("engine.rollout.control:cancel", "rollout.cancel", lambda ops, s, a: ro.cancel(ops, None, a)),
    Case("engine.rollout.control:promote", "rollout.promote", lambda ops, s, a: ro.promote(ops, None, a)),
    Case(
        "engine.rollout.control:promote",
        "rollout.force_promote",
        lambda ops, s, a: ro.promote(ops, None, a, force=True),
    ),
    Case("engine.rollout.rollback:rollback", "rollout.rollback", lambda ops, s, a: ro.rollback(s, ops, None, a, "x")),
    Case(
        "engine.rollout.guardrails:evaluate_guardrail",
        "rollout.guardrail.evaluate",
        lambda ops, s, a: gr.evaluate_guardrail(s, ops, actor=a),
    ),
    Case(
        "engine.rollout.guardrails:start_evaluator",
        "rollout.guardrail.evaluate",
        lambda ops, s, a: gr.start_evaluator(ops, settings=s, actor=a),
    ),
    Case(
        "engine.rollout.guardrails:revert_guardrail",
        "rollout.guardrail.revert",
        lambda ops, s, a: gr.revert_guardrail(s, ops, actor=a, reason="x"),
    ),
    Case(
        "engine.rollout.guardrails:end_bake",
        "rollout.guardrail.end",
        lambda ops, s, a: gr.end_bake(ops, actor=a, reason="x"),
    ),
    Case(
        "engine.rollout.stages:save_stage_config",
        "stages.edit",
        lambda ops, s, a: save_stage_config(ops, a, {}, s.data_dir / "stages.json"),
    ),
    # monitoring (engine.monitoring)
    Case(
        "engine.monitoring.alerts:save_rules",
        "alerts.rules",
        lambda ops, s, a: alerts.save_rules(s, [], ops=ops, actor=a),
    ),
    Case(
        "engine.monitoring.alerts:update_rules",
        "alerts.rules",
        lambda ops, s, a: alerts.update_rules(s, [], ops=ops, actor=a, now=0.0),
    ),
    Case(
        "engine.monitoring.alerts:reset_rules",
        "alerts.rules",
        lambda ops, s, a: alerts.reset_rules(s, ops=ops, actor=a),
    ),
    Case(
        "engine.monitoring.alerts:acknowledge",
        "alerts.acknowledge",
        lambda ops, s, a: alerts.acknowledge(ops, "error-rate", actor=a, now=0.0),
    ),
    Case(
        "engine.monitoring.alerts:evaluate",
        "alerts.evaluate",
        lambda ops, s, a: alerts.evaluate(ops, [], actor=a, now=0.0),
    ),
    Case(
        "engine.monitoring.alert_jobs:start_evaluator",
        "alerts.evaluator",
        lambda ops, s, a: alert_jobs.start_evaluator(s, ops, actor=a, launch=lambda *_: 0),
    ),
    Case(
        "engine.monitoring.alert_jobs:stop_evaluator",
        "alerts.evaluator",
        lambda ops, s, a: alert_jobs.stop_evaluator(ops, actor=a),
    ),
    # notify (engine.notify)
    Case(
        "engine.notify.store:add_channel",
        "notify.channel",
        lambda ops, s, a: ns.add_channel(ops, name="x", kind="webhook", config={}, actor=a),
    ),
    Case("engine.notify.store:update_channel", "notify.channel", lambda ops, s, a: ns.update_channel(ops, 1, actor=a)),
    Case("engine.notify.store:remove_channel", "notify.channel", lambda ops, s, a: ns.remove_channel(ops, 1, actor=a)),
    Case(
        "engine.notify.store:set_console_url",
        "notify.settings",
        lambda ops, s, a: ns.set_console_url(ops, "http://x.example", actor=a),
    ),
    Case(
        "engine.notify.store:set_repeat_interval",
        "notify.settings",
        lambda ops, s, a: ns.set_repeat_interval(ops, 60.0, actor=a),
    ),
    Case(
        "engine.notify.store:add_silence",
        "notify.silence",
        lambda ops, s, a: ns.add_silence(ops, "error-rate", duration_s=60.0, reason="x", actor=a),
    ),
    Case("engine.notify.store:lift_silence", "notify.silence", lambda ops, s, a: ns.lift_silence(ops, 1, actor=a)),
    Case(
        "engine.notify.sender:start_sender",
        "notify.send",
        lambda ops, s, a: notify_sender.start_sender(s, ops, actor=a, launch=lambda *_: 0),
    ),
    Case("engine.notify.sender:stop_sender", "notify.send", lambda ops, s, a: notify_sender.stop_sender(ops, actor=a)),
    Case("engine.notify.sender:send_now", "notify.send", lambda ops, s, a: notify_sender.send_now(ops, actor=a)),
    Case("engine.notify.sender:send_test", "notify.test", lambda ops, s, a: notify_sender.send_test(ops, 1, actor=a)),
    # cache (engine.cache.service; warm_now and clear need no live service: the actor is checked first)
    Case("engine.cache.service:request", "cache.warm", lambda ops, s, a: cache_service.request(ops, "warm", actor=a)),
    Case(
        "engine.cache.service:set_warm_interval",
        "cache.interval",
        lambda ops, s, a: cache_service.set_warm_interval(ops, 60.0, actor=a),
    ),
    Case("engine.cache.service:warm_now", "cache.warm", lambda ops, s, a: cache_service.warm_now(None, ops, actor=a)),
    Case("engine.cache.service:clear", "cache.clear", lambda ops, s, a: cache_service.clear(None, ops, actor=a)),
    # tuning (engine.tuning)
    Case(
        "engine.tuning.store:create_study",
        "tuning.start",
        lambda ops, s, a: tuning_store.create_study(ops, None, actor=a),
    ),
    Case(
        "engine.tuning.runner:start_study",
        "tuning.start",
        lambda ops, s, a: tuning_runner.start_study(ops, s, None, actor=a, launch=False),
    ),
    Case(
        "engine.tuning.runner:submit_study",
        "tuning.start",
        lambda ops, s, a: tuning_runner.submit_study(ops, None, actor=a),
    ),
    Case(
        "engine.tuning.runner:cancel_study",
        "tuning.cancel",
        lambda ops, s, a: tuning_runner.cancel_study(ops, 1, actor=a),
    ),
    Case(
        "engine.tuning.runner:resume_study",
        "tuning.resume",
        lambda ops, s, a: tuning_runner.resume_study(ops, s, 1, actor=a, launch=False),
    ),
    Case(
        "engine.tuning.outputs:handoff", "tuning.handoff", lambda ops, s, a: tuning_outputs.handoff(ops, s, 1, actor=a)
    ),
    # production (engine.production.control; a daily budget other than the default is an approver's choice)
    Case(
        "engine.production.control:start_production",
        "production.start",
        lambda ops, s, a: production.start_production(s, ops, actor=a, launch=False),
    ),
    Case(
        "engine.production.control:start_production",
        "production.budget",
        lambda ops, s, a: production.start_production(
            s, ops, budget_usd=2 * DEFAULT_DAILY_BUDGET_USD, actor=a, launch=False
        ),
    ),
    Case(
        "engine.production.control:pause_production",
        "production.pause",
        lambda ops, s, a: production.pause_production(ops, a),
    ),
    Case(
        "engine.production.control:resume_production",
        "production.resume",
        lambda ops, s, a: production.resume_production(ops, a, settings=s, launch=False),
    ),
    Case(
        "engine.production.control:stop_production",
        "production.stop",
        lambda ops, s, a: production.stop_production(ops, a),
    ),
    # configs (engine.core.configs: below the store, so it checks the actor its caller authorized)
    Case(
        "engine.core.configs:set_candidate",
        "rollout.candidate",
        lambda ops, s, a: configs.set_candidate(ops, s.data_dir / "none.json", a),
    ),
    Case(
        "engine.core.configs:set_live_config",
        "config.live",
        lambda ops, s, a: configs.set_live_config(ops, None, ParameterConfig(), run_id=1, actor=a, at=0.0),
    ),
    # discovery, catalogue and the demo
    Case(
        "engine.discovery.entity_view:run_entity",
        "discovery.run",
        lambda ops, s, a: entity_view.run_entity(None, ops, "e1", actor=a),
    ),
    Case(
        "engine.catalogue.importer:import_catalogue",
        "catalogue.import",
        lambda ops, s, a: importer.import_catalogue(ops, None, s.data_dir / "none.csv", {}, actor=a),
    ),
    Case(
        "engine.catalogue.generator:seed_entities",
        "catalogue.import",
        lambda ops, s, a: generator.seed_entities(ops, None, 10, 1, {}, actor=a),
    ),
    Case("engine.discovery.demo:load_demo", "demo.load", lambda ops, s, a: demo.load_demo(s, None, ops, {}, actor=a)),
]

#: public engine functions that take an ``actor`` but perform no action of their own, and why
NOT_GATED: dict[str, str] = {
    "engine.store.opsdb:OpsDB.audit": "records who acted; the caller has authorized them",
    "engine.store.access:authorize": "the check itself",
    # rollout
    "engine.rollout.control:promote_stage": "the promotion itself, for promote (which authorized and checked "
    "four-eyes) and the worker's automatic promotion (WORKER; refuses a four-eyes stage)",
    "engine.rollout.control:start_reason": "words of the start decision record (who started it)",
    "engine.rollout.guardrails:begin_bake": "opens the bake inside a promotion's transaction; the promotion authorized",
    "engine.rollout.records:insert_decision": "writes a decision record; its caller authorized the actor it names",
    "engine.rollout.records:identity": "the identity fields a decision record keeps of an actor",
    "engine.rollout.notices:started": "tells people of a start the caller authorized",
    "engine.rollout.notices:rolled_back": "tells people of a rollback the caller authorized",
    "engine.rollout.notices:production_promoted": "tells people of a promotion the caller authorized",
    "engine.rollout.notices:guardrail_reverted": "tells people of a revert the caller authorized",
    "engine.cli.rollout:cmd_guardrail": "the CLI adapter: passes the command line's actor to the gated functions",
    "engine.store.opsdb:OpsDB.list_audit": "reads the audit log (its actor filter names whose rows)",
    "engine.core.access:check": "the pure check authorize ends with",
    "engine.core.access:denial": "says why an actor may not act; changes nothing",
    "engine.core.access:needs": "a button's hint; changes nothing",
    "engine.core.configs:SettingsStore.audit": "the protocol of OpsDB.audit (records who acted)",
    "engine.core.configs:AuditedSettingsStore.list_audit": "the protocol of OpsDB.list_audit (reads)",
    # jobs (engine.jobs.queue): low level, they record the name of whoever the domain function authorized
    "engine.jobs.queue:JobStore.submit": "the domain function that submits authorizes",
    "engine.jobs.queue:JobStore.request": "the domain function that submits authorizes",
    "engine.jobs.queue:JobStore.requeue": "the domain function that submits authorizes",
    "engine.jobs.queue:resume_job": "the domain function that submits authorizes",
}


# --------------------------------------------------------------------------- the tests
@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(tmp_path / "data"))
    from engine.core.settings import load_settings

    settings = load_settings().ensure_dirs()
    return open_ops_db(settings), settings


def _below(role: Role) -> Role:
    return Role(int(role) - 1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.function.split(":")[1])
def test_refuses_an_actor_without_the_role(case: Case, env) -> None:
    ops, settings = env
    need = ACTIONS[case.action]
    before = len(ops.list_audit(1000))
    with pytest.raises(PermissionDenied) as err:
        case.call(ops, settings, as_role(_below(need)))
    message = str(err.value)
    assert f"needs the {need.label} role" in message and "\n" not in message
    assert len(ops.list_audit(1000)) == before, "a refused call wrote an audit row"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.function.split(":")[1])
def test_refuses_a_plain_name(case: Case, env) -> None:
    ops, settings = env
    with pytest.raises(PermissionDenied, match="needs a verified actor"):
        case.call(ops, settings, "console:mallory")


def test_every_action_has_a_row() -> None:
    covered = {c.action for c in CASES}
    assert sorted(set(ACTIONS) - covered) == [], "actions without a row in CASES"
    assert sorted(covered - set(ACTIONS)) == [], "rows naming an unknown action"


def _functions_taking_an_actor() -> set[str]:
    found: set[str] = set()
    for path in sorted((ROOT / "engine").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(body: list[ast.stmt], prefix: str, module: str = module) -> None:
            for node in body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    visit(node.body, f"{prefix}{node.name}.", module)
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                    args = node.args
                    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
                    if "actor" in names:
                        found.add(f"{module}:{prefix}{node.name}")

        visit(tree.body, "")
    return found


def test_every_function_taking_an_actor_is_in_the_table() -> None:
    listed = {c.function for c in CASES} | set(NOT_GATED)
    missing = sorted(f for f in _functions_taking_an_actor() if f not in listed and not f.startswith("engine.bench."))
    assert missing == [], "functions taking an actor that are neither in CASES nor NOT_GATED"


def test_the_table_names_real_functions() -> None:
    real = _functions_taking_an_actor()
    assert sorted({c.function for c in CASES} - real) == []
    assert sorted(set(NOT_GATED) - real) == []


if __name__ == "__main__":
    for f in sorted(_functions_taking_an_actor() - {c.function for c in CASES} - set(NOT_GATED)):
        print(f)
