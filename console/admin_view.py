"""Admin page: the role map as a table (who changed each entry and when), what each role may do, and the
outcome lines of grant, remove, revoke sessions and seed.

Pure: pandas over engine.store.access results and the engine's action table, no Streamlit. Principals and
notes are stored text and stay text in text cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from console.vocab import MISSING
from engine.core.access import ACTIONS, Role
from engine.store.access import RoleEntry

#: the roles an admin can give, lowest first
ROLE_NAMES = tuple(r.label for r in Role)
#: what a role is for, in a line (the engine's ACTIONS table says exactly which action needs which role)
ROLE_PURPOSE = {
    Role.VIEWER: "every page and download; changes nothing (anyone signed in and not in the map)",
    Role.OPERATOR: "runs discovery, starts/pauses/resumes/cancels rollouts and studies, alerts, the cache",
    Role.APPROVER: "promotes, force-promotes and rolls back; hands configs to rollout; alert rules, stage table",
    Role.ADMIN: "assigns roles and revokes sessions",
}
ROLE_COLUMNS = ("principal", "role", "changed by", "changed at (UTC)", "note")


def _when(at: float) -> str:
    return f"{pd.Timestamp(at, unit='s'):%Y-%m-%d %H:%M}"


def roles_frame(entries: Sequence[RoleEntry]) -> pd.DataFrame:
    """The role map: one row per principal, with who changed it last and when."""
    rows = [
        {
            "principal": e.principal,
            "role": e.role.label,
            "changed by": e.updated_by or MISSING,
            "changed at (UTC)": _when(e.updated_at),
            "note": e.note or MISSING,
        }
        for e in entries
    ]
    return pd.DataFrame(rows, columns=list(ROLE_COLUMNS))


def actions_of(role: Role) -> list[str]:
    """The actions whose least role is exactly ``role`` (a role may also do everything below it)."""
    return sorted(a for a, need in ACTIONS.items() if need is role)


def roles_help_frame() -> pd.DataFrame:
    """What each role is for and the actions it adds to the role below it."""
    rows = [
        {
            "role": role.label,
            "what it is for": ROLE_PURPOSE[role],
            "adds": ", ".join(actions_of(role)) or MISSING,
        }
        for role in Role
    ]
    return pd.DataFrame(rows, columns=["role", "what it is for", "adds"])


def granted(entry: RoleEntry) -> str:
    return f"{entry.principal} is now {entry.role.label}."


def removed(principal: str, was_there: bool) -> str:
    who = principal.strip()
    return f"{who} was removed from the role map: a viewer from now on." if was_there else f"{who} was not in the map."


def revoked(principal: str) -> str:
    return f"Every session of {principal.strip()} signed in before now can no longer act: they sign in again."


def seeded(entries: Sequence[RoleEntry], name: str) -> str:
    n = len(entries)
    return f"{n} role{'' if n == 1 else 's'} loaded from {name}."


__all__ = [
    "ROLE_COLUMNS",
    "ROLE_NAMES",
    "actions_of",
    "granted",
    "removed",
    "revoked",
    "roles_frame",
    "roles_help_frame",
    "seeded",
]
