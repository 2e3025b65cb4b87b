"""The role map in the ops DB, and the check every state-changing engine function makes before it acts.

A principal is a verified e-mail (``alice@example.com``), a group of the
provider's groups claim (``group:sre``) or a command-line user (``cli:alice``).
A signed-in user's role is the highest of the principals that match them; one
that matches none is a viewer. Every change to the map is audited, in the same
transaction. ``authorize`` re-reads the map each time an actor acts, so taking a
role away (or revoking a person's sessions) stops an open console tab at its
next click, not at its next sign-in.

While the map is empty (a fresh data dir) the command line acts as admin, so the
first admin can be named: ``python -m engine access grant you@example.com admin``.
Whoever has shell access to the data dir can edit this database directly: roles
bind the console and scripts, not root.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.access import (
    BOOTSTRAP,
    OIDC,
    OS_USER,
    Actor,
    PermissionDenied,
    Role,
    check,
)
from engine.core.errors import ConfigError
from engine.store.opsdb import Migration, OpsDB

MIGRATIONS: list[Migration] = [
    Migration(
        "access",
        1,
        "role map and session revocations",
        (
            """
            CREATE TABLE IF NOT EXISTS access_roles (
                principal TEXT PRIMARY KEY,
                role TEXT NOT NULL,
                updated_at REAL NOT NULL,
                updated_by TEXT NOT NULL,
                note TEXT NOT NULL DEFAULT ''
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS access_revocations (
                principal TEXT PRIMARY KEY,
                revoked_before REAL NOT NULL,
                revoked_by TEXT NOT NULL
            )
            """,
        ),
    ),
]

MAX_PRINCIPAL = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NAME = re.compile(r"^[A-Za-z0-9._@+\-/ ]+$")


def normalize_principal(value: object) -> str:
    """A principal as stored: an e-mail (lower case), ``group:<name>`` or ``cli:<user>``; one-line error otherwise."""
    text = str(value or "").strip()
    if not text or len(text) > MAX_PRINCIPAL:
        raise ConfigError(f"principal {text[:40]!r} is empty or too long: give an e-mail, group:<name> or cli:<user>")
    for prefix in ("group:", "cli:"):
        if text.lower().startswith(prefix):
            rest = text[len(prefix) :].strip()
            if not rest or not _NAME.match(rest):
                raise ConfigError(f"principal {text[:40]!r}: give a name after {prefix!r} (letters, digits, . _ - @)")
            return prefix + (rest.lower() if prefix == "cli:" else rest)
    if not _EMAIL.match(text):
        raise ConfigError(
            f"principal {text[:40]!r} is not an e-mail, group:<name> or cli:<user>: e.g. alice@example.com"
        )
    return text.lower()


@dataclass(frozen=True)
class RoleEntry:
    principal: str
    role: Role
    updated_at: float
    updated_by: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "role": self.role.label,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "note": self.note,
        }


def list_roles(ops: OpsDB) -> list[RoleEntry]:
    """The role map, by principal."""
    with ops.connect() as db:
        rows = db.conn.execute(
            "SELECT principal, role, updated_at, updated_by, note FROM access_roles ORDER BY principal"
        ).fetchall()
    return [RoleEntry(p, Role.parse(r), at, by, note) for p, r, at, by, note in rows]


def map_is_empty(ops: OpsDB) -> bool:
    with ops.connect() as db:
        return db.conn.execute("SELECT 1 FROM access_roles LIMIT 1").fetchone() is None


def principals_of(
    *, email: str = "", email_verified: bool = True, groups: Iterable[str] = (), key: str = ""
) -> list[str]:
    """The principals a person matches: their verified e-mail, each group, their command-line key."""
    out: list[str] = []
    if email and email_verified:
        out.append(email.strip().lower())
    out.extend(f"group:{g.strip()}" for g in groups if str(g).strip())
    if key.startswith("cli:"):
        out.append(key.lower())
    return out


def role_of(ops: OpsDB, principals: Iterable[str]) -> Role:
    """The highest role of ``principals`` in the map; viewer when none is there."""
    wanted = list(dict.fromkeys(principals))
    if not wanted:
        return Role.VIEWER
    with ops.connect() as db:
        rows = db.conn.execute(
            f"SELECT role FROM access_roles WHERE principal IN ({','.join('?' * len(wanted))})", wanted
        ).fetchall()
    return max((Role.parse(r) for (r,) in rows), default=Role.VIEWER)


def revoked_before(ops: OpsDB, principals: Iterable[str]) -> float | None:
    """The latest revocation time of any of ``principals`` (sessions signed in before it cannot act)."""
    wanted = list(dict.fromkeys(principals))
    if not wanted:
        return None
    with ops.connect() as db:
        row = db.conn.execute(
            f"SELECT MAX(revoked_before) FROM access_revocations WHERE principal IN ({','.join('?' * len(wanted))})",
            wanted,
        ).fetchone()
    return row[0] if row and row[0] is not None else None


def _principals_of_actor(actor: Actor) -> list[str]:
    return principals_of(email=actor.email, groups=actor.groups, key=actor.key)


def signed_in_actor(
    ops: OpsDB,
    *,
    email: str,
    email_verified: bool = True,
    issuer: str = "",
    subject: str = "",
    name: str = "",
    groups: Iterable[str] = (),
    signed_in_at: float | None = None,
    expires_at: float | None = None,
) -> Actor:
    """The actor of a person the OpenID provider verified, with their role from the map."""
    groups = tuple(str(g) for g in groups)
    key = email.strip().lower() if email and email_verified else f"{issuer}#{subject}"
    role = role_of(ops, principals_of(email=email, email_verified=email_verified, groups=groups))
    return Actor(
        key=key,
        role=role,
        verified_by=OIDC,
        email=email.strip().lower() if email_verified else "",
        issuer=issuer,
        subject=subject,
        name=name,
        groups=groups,
        signed_in_at=signed_in_at,
        expires_at=expires_at,
    )


def cli_actor(ops: OpsDB, user: str) -> Actor:
    """The command line's actor ``cli:<user>``: admin while the map is empty, else its role from the map."""
    key = f"cli:{(user or 'unknown').strip().lower()}"
    if map_is_empty(ops):
        return Actor(key, Role.ADMIN, BOOTSTRAP)
    return Actor(key, role_of(ops, [key]), OS_USER)


def authorize(ops: OpsDB, actor: object, action: str, *, now: float | None = None) -> Actor:
    """``actor`` with its current role when it may perform ``action``; PermissionDenied otherwise.

    A signed-in or command-line actor's role is read from the map now (a role taken away since
    sign-in no longer acts), and a session signed in before a revocation of its person is refused.
    """
    now = time.time() if now is None else now
    if not isinstance(actor, Actor):
        return check(actor, action, now=now)  # raises: not a verified actor
    current = actor
    if actor.verified_by == BOOTSTRAP and not map_is_empty(ops):
        current = Actor(actor.key, role_of(ops, [actor.key]), OS_USER)
    elif actor.verified_by in (OIDC, OS_USER):
        principals = _principals_of_actor(actor)
        cutoff = revoked_before(ops, principals)
        if cutoff is not None and (actor.signed_in_at is None or actor.signed_in_at < cutoff):
            raise PermissionDenied(f"{actor.key}'s session was revoked by an admin: sign in again")
        current = actor.with_role(role_of(ops, principals))
    return check(current, action, now=now)


def grant(
    ops: OpsDB, actor: Actor, principal: str, role: Role | str, *, note: str = "", now: float | None = None
) -> RoleEntry:
    """Give ``principal`` ``role`` (admin only); audited in the same transaction."""
    now = time.time() if now is None else now
    who = authorize(ops, actor, "access.assign", now=now)
    p = normalize_principal(principal)
    r = Role.parse(role)
    note = " ".join(str(note or "").split())[:200]
    with ops.transaction() as db:
        before = db.conn.execute("SELECT role FROM access_roles WHERE principal = ?", [p]).fetchone()
        db.conn.execute(
            "INSERT INTO access_roles (principal, role, updated_at, updated_by, note) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(principal) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at, "
            "updated_by = excluded.updated_by, note = excluded.note",
            [p, r.label, now, who.key, note],
        )
        ops.audit(who, "access.grant", p, {"role": r.label, "was": before[0] if before else None}, db=db)
    return RoleEntry(p, r, now, who.key, note)


def remove(ops: OpsDB, actor: Actor, principal: str, *, now: float | None = None) -> bool:
    """Take ``principal`` out of the map (they become a viewer); audited. False when it was not there."""
    now = time.time() if now is None else now
    who = authorize(ops, actor, "access.assign", now=now)
    p = normalize_principal(principal)
    with ops.transaction() as db:
        before = db.conn.execute("SELECT role FROM access_roles WHERE principal = ?", [p]).fetchone()
        if before is None:
            return False
        db.conn.execute("DELETE FROM access_roles WHERE principal = ?", [p])
        ops.audit(who, "access.remove", p, {"was": before[0]}, db=db)
    return True


def revoke_sessions(ops: OpsDB, actor: Actor, principal: str, *, now: float | None = None) -> float:
    """Every session of ``principal`` signed in before now can no longer act; audited. Returns the cut-off."""
    now = time.time() if now is None else now
    who = authorize(ops, actor, "access.revoke_sessions", now=now)
    p = normalize_principal(principal)
    with ops.transaction() as db:
        db.conn.execute(
            "INSERT INTO access_revocations (principal, revoked_before, revoked_by) VALUES (?, ?, ?) "
            "ON CONFLICT(principal) DO UPDATE SET revoked_before = excluded.revoked_before, "
            "revoked_by = excluded.revoked_by",
            [p, now, who.key],
        )
        ops.audit(who, "access.revoke_sessions", p, {"revoked_before": now}, db=db)
    return now


def read_seed(path: str | Path) -> dict[str, Role]:
    """A role file: JSON ``{"roles": {"alice@example.com": "admin", "group:sre": "operator"}}``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"role file {p} not found: give a JSON file with a 'roles' object") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"role file {p} is not readable JSON ({str(exc).splitlines()[0]})") from None
    roles = doc.get("roles") if isinstance(doc, Mapping) else None
    if not isinstance(roles, Mapping) or not roles:
        raise ConfigError(f"role file {p}: give a non-empty 'roles' object of principal -> role")
    return {normalize_principal(k): Role.parse(v) for k, v in roles.items()}


def seed(ops: OpsDB, actor: Actor, path: str | Path, *, now: float | None = None) -> list[RoleEntry]:
    """Load a role file into the map (every entry validated first, then all in one audited transaction)."""
    now = time.time() if now is None else now
    who = authorize(ops, actor, "access.assign", now=now)
    roles = read_seed(path)
    with ops.transaction() as db:
        for p, r in roles.items():
            db.conn.execute(
                "INSERT INTO access_roles (principal, role, updated_at, updated_by, note) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(principal) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at, "
                "updated_by = excluded.updated_by",
                [p, r.label, now, who.key, f"seeded from {Path(path).name}"],
            )
        ops.audit(who, "access.seed", str(Path(path).name), {"roles": {p: r.label for p, r in roles.items()}}, db=db)
    return [RoleEntry(p, r, now, who.key) for p, r in roles.items()]


__all__ = [
    "MIGRATIONS",
    "RoleEntry",
    "authorize",
    "cli_actor",
    "grant",
    "list_roles",
    "map_is_empty",
    "normalize_principal",
    "principals_of",
    "read_seed",
    "remove",
    "revoke_sessions",
    "role_of",
    "seed",
    "signed_in_actor",
]
