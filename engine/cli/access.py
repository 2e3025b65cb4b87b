"""`python -m engine access list|grant|remove|revoke-sessions|seed`: the Admin page on the command line.

The role map (engine.store.access) says who may do what: a verified e-mail, ``group:<name>`` (the
provider's groups claim) or ``cli:<user>`` gets viewer, operator, approver or admin; anyone signed in
and not in it is a viewer. Every change needs admin and is audited; this command acts as
``cli:<os user>`` with that user's role from the map (admin while the map is empty, so the first admin
can be named). Whoever has shell access to the data dir can bypass this: roles bind the console and
scripts, not root.
"""

from __future__ import annotations

import argparse
import json
import time

from engine.cli.common import actor, open_ops
from engine.core.access import BOOTSTRAP, Role
from engine.store.access import grant, list_roles, remove, revoke_sessions, seed

ROLE_NAMES = [r.label for r in Role]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "access",
        help="who may do what: the role map (list, grant, remove, revoke sessions, seed from a file)",
        description=(
            "The role map in the ops DB: principals (an e-mail, group:<name>, cli:<user>) and their roles "
            f"({', '.join(ROLE_NAMES)}). Changes need admin and are audited."
        ),
    )
    sub = p.add_subparsers(dest="access_command", metavar="ACTION")
    sub.required = True

    ls = sub.add_parser("list", help="every principal with its role, who changed it and when")
    ls.add_argument("--json", action="store_true", help="print the entries as JSON")
    ls.set_defaults(func=cmd_list)

    g = sub.add_parser("grant", help="give a principal a role (admin only; audited)")
    g.add_argument("principal", help="an e-mail, group:<name> or cli:<user>")
    g.add_argument("role", choices=ROLE_NAMES, help="the role to give")
    g.add_argument("--note", default="", help="why (kept with the entry, at most 200 characters)")
    g.set_defaults(func=cmd_grant)

    r = sub.add_parser("remove", help="take a principal out of the map: they become a viewer (admin only)")
    r.add_argument("principal", help="an e-mail, group:<name> or cli:<user>")
    r.set_defaults(func=cmd_remove)

    v = sub.add_parser(
        "revoke-sessions", help="every console session of a principal signed in before now can no longer act"
    )
    v.add_argument("principal", help="an e-mail, group:<name> or cli:<user>")
    v.set_defaults(func=cmd_revoke)

    s = sub.add_parser("seed", help='load a JSON role file {"roles": {"alice@example.com": "admin", ...}}')
    s.add_argument("path", help="the role file")
    s.set_defaults(func=cmd_seed)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def cmd_list(args: argparse.Namespace) -> int:
    entries = list_roles(open_ops())
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print("the role map is empty: the command line acts as admin; everyone signed in is a viewer")
        return 0
    width = max(len(e.principal) for e in entries)
    for e in entries:
        note = f"  ({e.note})" if e.note else ""
        print(f"{e.principal:<{width}}  {e.role.label:<8}  {_when(e.updated_at)}  by {e.updated_by}{note}")
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    ops = open_ops()
    who = actor(ops)
    entry = grant(ops, who, args.principal, args.role, note=args.note)
    print(f"{entry.principal} is now {entry.role.label} (by {entry.updated_by})")
    if who.verified_by == BOOTSTRAP and entry.principal != who.key:
        print(
            f"the role map is no longer empty: {who.key} is a viewer from now on "
            f"(`python -m engine access grant {who.key} admin` needs an admin now, e.g. from the Admin page)"
        )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    ops = open_ops()
    if remove(ops, actor(ops), args.principal):
        print(f"{args.principal.strip().lower()} removed from the role map: a viewer from now on")
    else:
        print(f"{args.principal.strip()} was not in the role map: nothing changed")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    ops = open_ops()
    at = revoke_sessions(ops, actor(ops), args.principal)
    print(f"sessions of {args.principal.strip()} signed in before {_when(at)} can no longer act: they sign in again")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    ops = open_ops()
    entries = seed(ops, actor(ops), args.path)
    for e in entries:
        print(f"{e.principal} is now {e.role.label}")
    print(f"{len(entries)} role(s) loaded from {args.path}")
    return 0
