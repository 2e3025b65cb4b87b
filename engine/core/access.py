"""Who may do what: roles, the actor every state-changing engine function takes, and the permission table.

Pure: the decision (``check``) is a function of the actor and the action. The
role map, revocations and the audit columns live in the ops DB
(``engine.store.access``), which re-resolves an actor's role there at the moment
it acts (``authorize``), so a role taken away or a session revoked stops an
open console tab too.

Roles are ordered: viewer < operator < approver < admin; each role may do what
the roles below it may. ``ACTIONS`` names every state-changing action and the
least role it needs; the engine function that performs an action calls
``engine.store.access.authorize(ops, actor, ACTION)`` before it changes anything.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from enum import IntEnum
from typing import Any

from engine.core.errors import DiscoveryError


class PermissionDenied(DiscoveryError):
    """An actor tried an action its role does not allow, or its session has expired or been revoked."""


class Role(IntEnum):
    VIEWER = 0
    OPERATOR = 1
    APPROVER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> Role:
        """A role from its name (``"approver"``) or itself; a clear error for anything else."""
        if isinstance(value, Role):
            return value
        text = str(value or "").strip().lower()
        for role in cls:
            if role.label == text:
                return role
        raise DiscoveryError(f"unknown role {str(value)[:40]!r}: use one of {', '.join(r.label for r in cls)}")


#: how an actor's identity was established
OIDC = "oidc"  # the console, signed in through the OpenID provider (st.login)
LOCAL = "local"  # the console with sign-in off (loopback only): one built-in identity
OS_USER = "os"  # the command line: the OS user, role from the role map
BOOTSTRAP = "bootstrap"  # the command line while the role map is empty (a fresh data dir): admin
SYSTEM = "system"  # a worker or the engine itself acting on a job someone authorized
VERIFIED_BY = (OIDC, LOCAL, OS_USER, BOOTSTRAP, SYSTEM)
#: identities for which "a second person" cannot be told apart: four-eyes is recorded as waived, not met
SINGLE_USER = (LOCAL, BOOTSTRAP)

#: every state-changing action and the least role it needs (the one table the engine and its tests use)
ACTIONS: dict[str, Role] = {
    # operator: run discovery and long work, handle alerts, the cache
    "discovery.run": Role.OPERATOR,
    "catalogue.import": Role.OPERATOR,
    "demo.load": Role.OPERATOR,
    "rollout.start": Role.OPERATOR,
    "rollout.pause": Role.OPERATOR,
    "rollout.resume": Role.OPERATOR,
    "rollout.cancel": Role.OPERATOR,
    "rollout.guardrail.evaluate": Role.OPERATOR,
    "tuning.start": Role.OPERATOR,
    "tuning.cancel": Role.OPERATOR,
    "tuning.resume": Role.OPERATOR,
    "production.start": Role.OPERATOR,
    "production.pause": Role.OPERATOR,
    "production.resume": Role.OPERATOR,
    "production.stop": Role.OPERATOR,
    "alerts.evaluate": Role.OPERATOR,
    "alerts.acknowledge": Role.OPERATOR,
    "alerts.evaluator": Role.OPERATOR,
    "cache.warm": Role.OPERATOR,
    "cache.clear": Role.OPERATOR,
    "cache.interval": Role.OPERATOR,
    "notify.send": Role.OPERATOR,
    "notify.test": Role.OPERATOR,
    "notify.silence": Role.OPERATOR,
    # approver: what changes what production does
    "rollout.promote": Role.APPROVER,
    "rollout.force_promote": Role.APPROVER,
    "rollout.rollback": Role.APPROVER,
    "rollout.guardrail.revert": Role.APPROVER,
    "rollout.guardrail.end": Role.APPROVER,
    "rollout.candidate": Role.APPROVER,
    "config.live": Role.APPROVER,
    "tuning.handoff": Role.APPROVER,
    "alerts.rules": Role.APPROVER,
    "stages.edit": Role.APPROVER,
    "production.budget": Role.APPROVER,
    "notify.channel": Role.APPROVER,
    "notify.settings": Role.APPROVER,
    # admin: who may do what
    "access.assign": Role.ADMIN,
    "access.revoke_sessions": Role.ADMIN,
}


def required_role(action: str) -> Role:
    """The least role ``action`` needs; an unknown action is a programming error, never allowed by default."""
    try:
        return ACTIONS[action]
    except KeyError:
        raise KeyError(f"unknown action {action!r}: add it to engine.core.access.ACTIONS") from None


@dataclass(frozen=True)
class Actor:
    """Who is acting: an identity, its role and how both were established.

    ``key`` is the identity compared for four-eyes and recorded in the audit
    log's actor column (``alice@example.com``, ``cli:alice``, ``local``,
    ``worker``). ``str(actor)`` is that key, so an actor can stand where a name
    was recorded before.
    """

    key: str
    role: Role
    verified_by: str
    email: str = ""
    issuer: str = ""
    subject: str = ""
    name: str = ""
    groups: tuple[str, ...] = ()
    signed_in_at: float | None = None
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key.strip():
            raise DiscoveryError("an actor needs an identity (an e-mail, cli:<user>, local or worker)")
        if self.verified_by not in VERIFIED_BY:
            raise DiscoveryError(f"unknown verification {self.verified_by!r}: use one of {', '.join(VERIFIED_BY)}")
        object.__setattr__(self, "role", Role.parse(self.role))

    def __str__(self) -> str:
        return self.key

    @property
    def display(self) -> str:
        """How a page names the actor: ``alice@example.com (approver)``."""
        return f"{self.key} ({self.role.label})"

    def with_role(self, role: Role) -> Actor:
        return replace(self, role=role)

    def audit_fields(self) -> dict[str, Any]:
        """The identity columns of an audit row or decision record (never a token or a secret)."""
        return {
            "actor_role": self.role.label,
            "actor_verified_by": self.verified_by,
            "actor_email": self.email,
            "actor_issuer": self.issuer,
            "actor_subject": self.subject,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["role"] = self.role.label
        d["groups"] = list(self.groups)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Actor:
        return cls(
            key=str(d["key"]),
            role=Role.parse(d["role"]),
            verified_by=str(d["verified_by"]),
            email=str(d.get("email") or ""),
            issuer=str(d.get("issuer") or ""),
            subject=str(d.get("subject") or ""),
            name=str(d.get("name") or ""),
            groups=tuple(str(g) for g in d.get("groups") or ()),
            signed_in_at=d.get("signed_in_at"),
            expires_at=d.get("expires_at"),
        )


#: the engine acting on work someone authorized (a worker's automatic promotion, rollback on a failed verdict)
WORKER = Actor("worker", Role.ADMIN, SYSTEM)
#: the console with sign-in off, on loopback only
LOCAL_ACTOR = Actor("local", Role.ADMIN, LOCAL)


def _article(role: Role) -> str:
    return "an" if role.label[0] in "aeiou" else "a"


def denial(actor: Actor, action: str, *, now: float | None = None) -> str | None:
    """Why ``actor`` may not perform ``action`` now (one line), or None when it may."""
    need = required_role(action)
    now = time.time() if now is None else now
    if actor.expires_at is not None and now >= actor.expires_at:
        return f"{actor.key}'s session has expired: sign out and sign in again ({action} was not done)"
    if actor.role < need:
        return f"{action} needs the {need.label} role; {actor.key} is {_article(actor.role)} {actor.role.label}"
    return None


def check(actor: object, action: str, *, now: float | None = None) -> Actor:
    """``actor`` when it may perform ``action``; PermissionDenied (one line, naming the role needed) otherwise."""
    if not isinstance(actor, Actor):
        raise PermissionDenied(
            f"{action} needs a verified actor (got {type(actor).__name__}): "
            "the console passes the signed-in user, the command line cli:<user>"
        )
    why = denial(actor, action, now=now)
    if why:
        raise PermissionDenied(why)
    return actor


def needs(actor: Actor | None, action: str) -> str | None:
    """A button's hint: ``"needs approver"`` when ``actor``'s role is too low, None when it may act."""
    need = required_role(action)
    if actor is None or actor.role < need:
        return f"needs {need.label}"
    return None


def four_eyes_denial(starter: str, approver: Actor) -> str | None:
    """Why ``approver`` may not be the second person for a run ``starter`` started (None when they may).

    A single-user identity (sign-in off, or a fresh data dir's command line) cannot be told from the
    starter; ``four_eyes_outcome`` records that as waived rather than met.
    """
    if approver.verified_by in SINGLE_USER or approver.verified_by == SYSTEM:
        return None
    if approver.key.strip().lower() == str(starter or "").strip().lower():
        return (
            f"four-eyes: {approver.key} started this run, so a different approver must promote it "
            "(a rollback needs no second person)"
        )
    return None


def four_eyes_outcome(starter: str, approver: Actor) -> str:
    """How the decision record states the four-eyes rule was satisfied: ``met`` or ``waived (...)``."""
    if approver.verified_by in SINGLE_USER:
        return f"waived ({approver.verified_by}: sign-in is off, one person cannot be told from another)"
    return "met"


__all__ = [
    "ACTIONS",
    "BOOTSTRAP",
    "LOCAL",
    "LOCAL_ACTOR",
    "OIDC",
    "OS_USER",
    "SINGLE_USER",
    "SYSTEM",
    "WORKER",
    "Actor",
    "PermissionDenied",
    "Role",
    "check",
    "denial",
    "four_eyes_denial",
    "four_eyes_outcome",
    "needs",
    "required_role",
]
