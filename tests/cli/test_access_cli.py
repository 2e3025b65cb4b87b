"""`python -m engine access ...`: the role map on the command line. On a fresh data dir the command line is admin
and names the first admin; from then on it has the role the map gives cli:<user>; every change is audited."""

from __future__ import annotations

import json

from engine.cli.common import os_user
from engine.cli.main import main
from engine.store.access import list_roles, revoked_before
from engine.store.opsdb import open_ops_db
from tests.support.cli import cli_env, one_line_error, run_cli


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["access", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_first_grant_names_an_admin_and_ends_the_command_lines_bootstrap(settings, monkeypatch, capsys):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    me = f"cli:{os_user().lower()}"
    code, out, _ = run(capsys, "list")
    assert code == 0 and "the role map is empty" in out
    code, out, _ = run(capsys, "grant", "Alice@Example.com", "admin", "--note", "first admin")
    assert code == 0 and out.startswith("alice@example.com is now admin (by cli:")
    assert f"{me} is a viewer from now on" in out
    code, _, err = run(capsys, "grant", "bob@example.com", "operator")
    assert code == 2 and err == f"error: access.assign needs the admin role; {me} is a viewer\n"
    ops = open_ops_db(settings)
    assert [(e.principal, e.role.label, e.note) for e in list_roles(ops)] == [
        ("alice@example.com", "admin", "first admin")
    ]
    audit = ops.list_audit(5, action_prefix="access.")
    assert [(r["action"], r["target"], r["actor"], r["actor_verified_by"]) for r in audit] == [
        ("access.grant", "alice@example.com", me, "bootstrap")
    ]


def test_an_admin_on_the_command_line_grants_removes_revokes_and_seeds(settings, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DISCOVERY_DATA_DIR", str(settings.data_dir))
    me = f"cli:{os_user().lower()}"
    assert run(capsys, "grant", me, "admin")[0] == 0  # the bootstrap names itself admin
    assert run(capsys, "grant", "bob@example.com", "operator")[1] == f"bob@example.com is now operator (by {me})\n"
    code, out, _ = run(capsys, "revoke-sessions", "bob@example.com")
    assert code == 0 and "can no longer act" in out
    ops = open_ops_db(settings)
    assert revoked_before(ops, ["bob@example.com"]) is not None
    code, out, _ = run(capsys, "remove", "bob@example.com")
    assert code == 0 and "a viewer from now on" in out
    assert "was not in the role map" in run(capsys, "remove", "bob@example.com")[1]
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({"roles": {"group:sre": "operator", "Carol@Example.com": "approver"}}))
    code, out, _ = run(capsys, "seed", str(roles))
    assert code == 0 and out.endswith("2 role(s) loaded from " + str(roles) + "\n")
    code, out, _ = run(capsys, "list", "--json")
    listed = {e["principal"]: (e["role"], e["updated_by"]) for e in json.loads(out)}
    assert listed == {me: ("admin", me), "group:sre": ("operator", me), "carol@example.com": ("approver", me)}
    actions = [r["action"] for r in ops.list_audit(20, action_prefix="access.")]
    assert actions == [
        "access.seed",
        "access.remove",
        "access.revoke_sessions",
        "access.grant",
        "access.grant",
    ]
    assert all(r["actor"] == me for r in ops.list_audit(20, action_prefix="access."))


def test_a_bad_principal_or_role_file_is_one_line(settings, tmp_path):
    env = cli_env(settings)
    one_line_error(run_cli(env, tmp_path, "access", "grant", "not an address", "viewer"))
    bad = tmp_path / "roles.json"
    bad.write_text('{"roles": {"alice@example.com": "superuser"}}')
    err = one_line_error(run_cli(env, tmp_path, "access", "seed", str(bad)))
    assert "unknown role 'superuser'" in err
