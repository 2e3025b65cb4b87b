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
from engine.core.access import ACTIONS, PermissionDenied, Role
from engine.core.settings import Settings
from engine.rollout import guardrails as gr
from engine.rollout.stages import save_stage_config
from engine.store import access
from engine.store.opsdb import open_ops_db
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
