"""Configs: what differs between two ParameterConfigs, as a table any page can show.

Pure: pandas over engine.core.configs.config_diff. Every place where a config is
chosen or approved (the Rollout start form and run header, the promotion
confirmation, the Tuning winner and its handoff, the Configs page) shows this
same table: only the parameters that change, with their default and bounds.
"""

from __future__ import annotations

import pandas as pd

from engine.core.configs import ParamChange

DIFF_COLUMNS = ("parameter", "group", "from", "to", "change", "default", "bounds")


def diff_frame(changes: list[ParamChange]) -> pd.DataFrame:
    """One row per changed parameter: from, to, the change, the default and the allowed range."""
    rows = [
        {
            "parameter": c.name,
            "group": c.group,
            "from": f"{c.old:g}",
            "to": f"{c.new:g}",
            "change": f"{c.delta:+g}",
            "default": f"{c.default:g}",
            "bounds": f"{c.low:g} – {c.high:g}",
        }
        for c in changes
    ]
    return pd.DataFrame(rows, columns=list(DIFF_COLUMNS))


__all__ = ["DIFF_COLUMNS", "diff_frame"]
