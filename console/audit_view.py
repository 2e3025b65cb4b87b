"""Audit page: the filter (person, action prefix, time window), the audit table with the verified identity of
each row, and its CSV download.

Pure: pandas over ``OpsDB.list_audit`` rows, no Streamlit. Stored text (actors, targets, details) stays text
in text cells; the CSV escapes any cell a spreadsheet would run as a formula (the Actionable page's
``to_csv``), and its file name says what it holds and when it was made (console.naming).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from console.actionable_view import window
from console.naming import download_name, slug
from console.vocab import MISSING, human
from engine.production.feed import to_csv

#: the most rows the page reads and downloads at once
ROW_LIMIT = 5000
#: columns of the table and the CSV, in order: when, who (the key and the verified identity), what, on what
COLUMNS = (
    "when", "actor", "email", "issuer", "subject", "role", "verified_by", "action", "target", "details", "id",
)  # fmt: skip
#: how a column reads on the page (the CSV header keeps the names above)
HEADERS = {
    "when": "when (UTC)",
    "actor": "who",
    "email": "verified e-mail",
    "issuer": "issuer",
    "subject": "subject",
    "role": "role",
    "verified_by": "verified by",
    "action": "action",
    "target": "target",
    "details": "details",
    "id": "#",
}
#: how each way of establishing an identity reads (engine.core.access)
VERIFIED_BY = {
    "oidc": "OpenID sign-in",
    "local": "sign-in off (local)",
    "os": "command line (OS user)",
    "bootstrap": "command line (empty role map)",
    "system": "the engine",
}
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")


@dataclass(frozen=True)
class AuditFilter:
    """What the page asks the audit log for: a person (actor or e-mail, substring), an action prefix
    (``rollout.`` or ``access.grant``) and a window of UTC dates, both ends kept."""

    person: str = ""
    action_prefix: str = ""
    since: dt.date | None = None
    until: dt.date | None = None

    def query(self) -> dict[str, Any]:
        """The keyword arguments of ``OpsDB.list_audit``."""
        since, until = window(self.since, self.until)
        return {
            "limit": ROW_LIMIT,
            "person": self.person.strip() or None,
            "action_prefix": self.action_prefix.strip() or None,
            "since": since,
            "until": until,
        }


def _when(at: float | None) -> str:
    return MISSING if at is None else f"{pd.Timestamp(at, unit='s'):%Y-%m-%d %H:%M:%S}"


def _value(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return human(value) if _IDENTIFIER.match(value) else value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def details_text(details: Any) -> str:
    """A row's details as one line of ``key: value`` pairs (names as words, missing values as "—")."""
    if not isinstance(details, dict):
        return _value(details)
    if not details:
        return MISSING
    return "; ".join(f"{human(k)}: {_value(v)}" for k, v in details.items())


def audit_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``list_audit`` rows as the table's and the CSV's rows (COLUMNS), newest first as given."""
    out = []
    for r in rows:
        verified = r.get("actor_verified_by") or ""
        out.append(
            {
                "when": _when(r.get("at")),
                "actor": r.get("actor") or MISSING,
                "email": r.get("actor_email") or MISSING,
                "issuer": r.get("actor_issuer") or MISSING,
                "subject": r.get("actor_subject") or MISSING,
                "role": r.get("actor_role") or MISSING,
                "verified_by": VERIFIED_BY.get(verified, verified) or MISSING,
                "action": r.get("action") or MISSING,
                "target": r.get("target") or MISSING,
                "details": details_text(r.get("details")),
                "id": int(r.get("id") or 0),
            }
        )
    return out


def audit_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The page's table: every cell text (ids as numbers), headers in words."""
    frame = pd.DataFrame(audit_rows(rows), columns=list(COLUMNS))
    return frame.rename(columns=HEADERS)


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The filtered audit log as CSV, UTF-8; a cell starting with = + - @ gets a leading apostrophe."""
    return to_csv(audit_rows(rows), COLUMNS).encode("utf-8")


def csv_name(f: AuditFilter, *, now: float | None = None) -> str:
    """``discovery-audit[-<person>][-<action>][-since-YYYYmmdd][-until-YYYYmmdd]-<stamp>.csv``."""
    parts = [
        slug(f.person),
        slug(f.action_prefix),
        f"since-{f.since:%Y%m%d}" if f.since else "",
        f"until-{f.until:%Y%m%d}" if f.until else "",
    ]
    return download_name("audit", "csv", *[p for p in parts if p], now=now)


def summary(rows: list[dict[str, Any]], f: AuditFilter) -> str:
    """One line over the table: how many rows, and whether the row limit cut the list."""
    n = len(rows)
    more = f" (the newest {ROW_LIMIT:,}; narrow the filter to see older ones)" if n >= ROW_LIMIT else ""
    what = "row" if n == 1 else "rows"
    return f"{n:,} audit {what}{more}."


__all__ = [
    "COLUMNS",
    "ROW_LIMIT",
    "AuditFilter",
    "audit_frame",
    "audit_rows",
    "csv_bytes",
    "csv_name",
    "details_text",
    "summary",
]
