"""The Admin and Audit pages' tables and files without a page (console.admin_view, console.audit_view), on a
real ops DB: the role map with who changed it, the audit log with each row's verified identity, the filter,
and a CSV download whose formula-like cells a spreadsheet would not run."""

from __future__ import annotations

import csv
import datetime as dt
import io

from console import admin_view, audit_view
from engine.core.access import LOCAL_ACTOR, Role
from engine.store.access import grant, list_roles
from engine.store.opsdb import open_ops_db
from tests.support.actors import person

DAY = dt.date(2026, 12, 1)
NOON = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC).timestamp()


def test_the_role_map_table_says_who_changed_each_entry_and_when(settings):
    ops = open_ops_db(settings)
    grant(ops, LOCAL_ACTOR, "Ana@Example.com", "approver", note="=on call", now=NOON)
    grant(ops, LOCAL_ACTOR, "group:sre", Role.OPERATOR, now=NOON + 60)
    frame = admin_view.roles_frame(list_roles(ops))
    assert list(frame.columns) == list(admin_view.ROLE_COLUMNS)
    assert frame.to_dict("records") == [
        {
            "principal": "ana@example.com",
            "role": "approver",
            "changed by": "local",
            "changed at (UTC)": "2026-12-01 12:00",
            "note": "=on call",
        },
        {
            "principal": "group:sre",
            "role": "operator",
            "changed by": "local",
            "changed at (UTC)": "2026-12-01 12:01",
            "note": "—",
        },
    ]


def test_each_role_adds_the_actions_of_the_engine_table():
    frame = admin_view.roles_help_frame()
    assert frame["role"].tolist() == ["viewer", "operator", "approver", "admin"]
    adds = dict(zip(frame["role"], frame["adds"], strict=True))
    assert adds["viewer"] == "—"
    assert "rollout.promote" in adds["approver"] and "rollout.promote" not in adds["operator"]
    assert "access.assign" in adds["admin"]


def test_the_audit_table_shows_the_verified_identity_of_each_row(settings):
    ops = open_ops_db(settings)
    alice = person(ops, "alice@example.com", "approver", issuer="http://127.0.0.1:9/idp")
    ops.audit(alice, "rollout.promote", "run-1", {"stage": "pilot", "dry_run": False, "note": None})
    ops.audit("worker", "rollout.rolled_back", "run-2", {})
    rows = ops.list_audit(10)
    table = audit_view.audit_frame(rows)
    assert list(table.columns) == [audit_view.HEADERS[c] for c in audit_view.COLUMNS]
    promote = table[table["action"] == "rollout.promote"].iloc[0]
    assert promote["verified e-mail"] == "alice@example.com"
    assert promote["issuer"] == "http://127.0.0.1:9/idp" and promote["subject"] == "alice"
    assert promote["role"] == "approver" and promote["verified by"] == "OpenID sign-in"
    assert promote["details"] == "dry run: no; note: —; stage: pilot"  # stored with sorted keys
    worker = table[table["action"] == "rollout.rolled_back"].iloc[0]
    assert worker["verified e-mail"] == "—" and worker["details"] == "—"
    assert all(isinstance(v, str) for col in table.columns if col != "#" for v in table[col])


def test_the_filter_asks_the_audit_log_for_a_person_an_action_prefix_and_whole_utc_days(settings):
    ops = open_ops_db(settings)
    bob = person(ops, "bob@example.com", "operator")
    for at, who, action in (
        (NOON - 86_400, bob, "rollout.start"),
        (NOON, bob, "rollout.pause"),
        (NOON + 3600, bob, "cache.clear"),
        (NOON + 7200, LOCAL_ACTOR, "rollout.resume"),
    ):
        with ops.transaction() as db:
            ops.audit(who, action, "t", {}, db=db)
            db.conn.execute("UPDATE audit SET at = ? WHERE id = (SELECT MAX(id) FROM audit)", [at])
    f = audit_view.AuditFilter(person="BOB@", action_prefix="rollout.", since=DAY, until=DAY)
    q = f.query()
    assert q["since"] == dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp() and q["until"] == q["since"] + 86_400
    rows = ops.list_audit(**q)
    assert [r["action"] for r in rows] == ["rollout.pause"]
    assert audit_view.AuditFilter().query() == {
        "limit": audit_view.ROW_LIMIT,
        "person": None,
        "action_prefix": None,
        "since": None,
        "until": None,
    }


def test_the_csv_escapes_formulas_and_is_named_for_its_filter(settings):
    ops = open_ops_db(settings)
    ops.audit(LOCAL_ACTOR, "access.grant", '=HYPERLINK("http://evil")', {"role": "admin"})
    data = audit_view.csv_bytes(ops.list_audit(10)).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(data)))
    assert list(rows[0]) == list(audit_view.COLUMNS)
    assert rows[0]["target"] == '\'=HYPERLINK("http://evil")' and rows[0]["actor"] == "local"
    assert rows[0]["verified_by"] == "sign-in off (local)" and rows[0]["role"] == "admin"
    name = audit_view.csv_name(audit_view.AuditFilter(person="Ana B", action_prefix="rollout.", since=DAY), now=NOON)
    assert name == "discovery-audit-ana-b-rollout-since-20261201-20261201-1200.csv"
    assert audit_view.csv_name(audit_view.AuditFilter(), now=NOON) == "discovery-audit-20261201-1200.csv"
