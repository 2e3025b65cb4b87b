"""Actors for tests: fixed roles for engine calls, and people in a real role map for four-eyes and sign-in."""

from __future__ import annotations

import time

from engine.core.access import OIDC, SYSTEM, WORKER, Actor, Role
from engine.store.access import grant, signed_in_actor

#: a test acting with every permission (not a person: four-eyes does not apply to it)
ADMIN = Actor("test-admin", Role.ADMIN, SYSTEM)
APPROVER = Actor("test-approver", Role.APPROVER, SYSTEM)
OPERATOR = Actor("test-operator", Role.OPERATOR, SYSTEM)
VIEWER = Actor("test-viewer", Role.VIEWER, SYSTEM)
#: what a test acting "as the engine" passes
ENGINE = WORKER


def as_role(role: Role | str, key: str | None = None) -> Actor:
    """A system-verified actor with ``role`` (for permission tables)."""
    r = Role.parse(role)
    return Actor(key or f"test-{r.label}", r, SYSTEM)


def person(ops, email: str, role: Role | str, *, issuer: str = "http://127.0.0.1/test-idp") -> Actor:
    """A signed-in person: ``email`` given ``role`` in the ops DB's role map, then signed in."""
    grant(ops, ADMIN, email, role, note="test")
    return signed_in_actor(ops, email=email, issuer=issuer, subject=email.split("@")[0], signed_in_at=time.time())


__all__ = ["ADMIN", "APPROVER", "ENGINE", "OIDC", "OPERATOR", "VIEWER", "as_role", "person"]
