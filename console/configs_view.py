"""Configs: what differs between two ParameterConfigs, as a table any page can show, and the Configs
page's tables (the live config's parameters, past live configs, saved config files).

Pure: pandas over engine.core.configs. Every place where a config is chosen or approved (the Rollout
start form and run header, the promotion confirmation, the Tuning winner and its handoff, the Configs
page) shows ``diff_frame``: only the parameters that change, with their default and bounds. Texts
returned here are plain (stored actors, paths and sources as they are): a page that puts them into
Markdown escapes them (console.text).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd

from console.naming import download_name
from console.vocab import display_frame
from engine.core.configs import (
    WHEN_FORMAT,
    LiveConfigEntry,
    ParamChange,
    SavedConfig,
    candidate_origin,
    config_diff,
    config_label,
    describe_vs_live,
    live_origin,
    value_text,
    when,
)
from engine.core.params import PARAMETER_SPECS, ParameterConfig

DIFF_COLUMNS = ("parameter", "group", "from", "to", "change", "default", "bounds")
PARAMS_COLUMNS = ("group", "parameter", "value", "default", "vs default", "bounds", "meaning")
HISTORY_COLUMNS = ("became live (UTC)", "by", "run", "config", "replaced", "against the live config now")
SAVED_COLUMNS = ("file", "config", "modified (UTC)", "against the live config")

#: what the values of a promotion recorded before parameters were kept read as
NOT_RECORDED = "values not recorded (promoted before the history was kept)"


def fmt_value(value: float | int) -> str:
    """A parameter value as it would be written in a config file: 20, 0.06, 86400 (no exponent, no commas)."""
    return value_text(value)


def fmt_change(delta: float) -> str:
    return f"{delta:+.10g}"


def fmt_bounds(low: float | int, high: float | int) -> str:
    return f"{fmt_value(low)} – {fmt_value(high)}"


def diff_frame(changes: list[ParamChange]) -> pd.DataFrame:
    """One row per changed parameter: from, to, the change, the default and the allowed range."""
    rows = [
        {
            "parameter": c.name,
            "group": c.group,
            "from": fmt_value(c.old),
            "to": fmt_value(c.new),
            "change": fmt_change(c.delta),
            "default": fmt_value(c.default),
            "bounds": fmt_bounds(c.low, c.high),
        }
        for c in changes
    ]
    return pd.DataFrame(rows, columns=list(DIFF_COLUMNS))


def params_frame(config: ParameterConfig) -> pd.DataFrame:
    """Every parameter of ``config`` grouped by group (PARAMETER_SPECS order), with its default, whether it
    differs from it, its bounds and meaning: the full table of the live config."""
    rows = [
        {
            "group": spec.group,
            "parameter": spec.name,
            "value": fmt_value(getattr(config, spec.name)),
            "default": fmt_value(spec.default),
            "vs default": "changed" if getattr(config, spec.name) != spec.default else "same",
            "bounds": fmt_bounds(spec.low, spec.high),
            "meaning": spec.help,
        }
        for spec in PARAMETER_SPECS
    ]
    return pd.DataFrame(rows, columns=list(PARAMS_COLUMNS))


def changed_from_defaults(config: ParameterConfig) -> int:
    """How many parameters of ``config`` differ from the defaults."""
    return len(config_diff(ParameterConfig(), config))


def history_frame(entries: Sequence[LiveConfigEntry], live: ParameterConfig) -> pd.DataFrame:
    """Every config that became live, newest first: when, who, which run, its hash, what it replaced and
    how it relates to the live config now."""
    rows = [
        {
            "became live (UTC)": time.strftime(WHEN_FORMAT, time.gmtime(e.at)) if e.at is not None else None,
            "by": e.actor or None,
            "run": f"run {e.run_id}" if e.run_id is not None else None,
            "config": e.hash + (" (live now)" if e.current else ""),
            "replaced": config_label(e.replaced) if e.replaced else None,
            "against the live config now": describe_vs_live(e.config, live) if e.config is not None else NOT_RECORDED,
        }
        for e in entries
    ]
    return display_frame(pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)))


def saved_frame(saved: Sequence[SavedConfig], live: ParameterConfig) -> pd.DataFrame:
    """The config files of the data dir: name, hash (or "not a valid config"), when modified, and how each
    relates to the live config (or its one-line problem)."""
    rows = [
        {
            "file": s.name,
            "config": s.hash if s.config is not None else "not a valid config",
            "modified (UTC)": time.strftime(WHEN_FORMAT, time.gmtime(s.modified)) if s.modified is not None else None,
            "against the live config": describe_vs_live(s.config, live) if s.config is not None else s.problem,
        }
        for s in saved
    ]
    return display_frame(pd.DataFrame(rows, columns=list(SAVED_COLUMNS)))


def config_json(config: ParameterConfig) -> bytes:
    """A config as the JSON file ``ParameterConfig.load`` reads (what a download holds)."""
    return (config.to_json() + "\n").encode("utf-8")


def config_file_name(kind: str, config: ParameterConfig, now: float | None = None) -> str:
    """The download name of a config: ``discovery-config-<kind>-<hash>-<UTC minute>.json``."""
    return download_name("config", "json", kind, config.hash(), now=now)


__all__ = [
    "DIFF_COLUMNS",
    "HISTORY_COLUMNS",
    "NOT_RECORDED",
    "PARAMS_COLUMNS",
    "SAVED_COLUMNS",
    "candidate_origin",
    "changed_from_defaults",
    "config_file_name",
    "config_json",
    "config_label",
    "diff_frame",
    "fmt_value",
    "history_frame",
    "live_origin",
    "params_frame",
    "saved_frame",
    "when",
]
