"""Names of the files the console offers for download.

Every download is named ``discovery-<kind>[-<part>...]-<stamp>.<ext>`` with a UTC
minute stamp ``YYYYmmdd-HHMM``, so downloads sort by what they hold and then by
when they were made. Pure functions, no Streamlit. (The monitoring report keeps
engine.monitoring.reports.report_filename: the CLI writes that name too.)
"""

from __future__ import annotations

import time

STAMP_FORMAT = "%Y%m%d-%H%M"


def stamp(now: float | None = None) -> str:
    """The UTC minute of ``now`` (default: the current time) as ``YYYYmmdd-HHMM``."""
    return time.strftime(STAMP_FORMAT, time.gmtime(time.time() if now is None else now))


def slug(text: str) -> str:
    """``text`` lower-cased with every run of other characters than [a-z0-9] made one ``-``."""
    out = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in text.lower())
    return "-".join(part for part in out.split("-") if part)


def download_name(kind: str, ext: str, *parts: str | int, now: float | None = None) -> str:
    """``discovery-<kind>-<parts...>-<YYYYmmdd-HHMM>.<ext>`` (UTC), e.g.
    ``download_name("tuning-study", "json", 7, "best-config", now=0)`` ->
    ``discovery-tuning-study-7-best-config-19700101-0000.json``."""
    return "-".join(["discovery", kind, *map(str, parts), stamp(now)]) + f".{ext}"


__all__ = ["STAMP_FORMAT", "download_name", "slug", "stamp"]
