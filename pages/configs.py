"""Configs: the live config (where it came from, every parameter), the handed-over candidate and its diff
against live, past live configs (when, by whom) and the config files saved in the data dir.

Thin and read-only: the engine says what is live, what was, and what is saved (engine.core.configs);
console.configs_view makes the tables. Every diff on this page reads from the live config now to the
other config. Handing a config over is the Rollout page's (and Tuning's) action.
"""

from __future__ import annotations

import streamlit as st

from console import configs_view as cv
from console.identity import operator_field
from console.naming import slug
from console.services import call, get_services
from console.text import md_code, md_escape
from engine.core.configs import (
    candidate_config,
    candidate_info,
    config_diff,
    configs_dir,
    describe_vs_live,
    live_config,
    live_config_history,
    live_config_info,
    saved_configs,
)
from engine.core.params import PARAMETER_SPECS

#: past live configs and saved files drawn with their own diff at most (the tables list them all)
EXPANDERS_SHOWN = 30

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
settings, ops = services.settings, services.ops

live = call(live_config, ops)
live_info = call(live_config_info, ops)
cand_info = call(candidate_info, ops)
candidate = call(candidate_config, ops)
history = call(live_config_history, ops)
saved = call(saved_configs, settings)

st.title("Configs")
st.caption(
    "Which parameters production runs, what the next rollout would try against them, what was live before "
    "and the config files saved in this data dir. Every diff reads from the live config now to the other one. "
    "The CLI shows the same: `python -m engine config show`, `config history`, `config diff A B`."
)

# one line that wraps on a narrow screen (hashes in metric tiles are cut to "fda…" below ~1100 px)
past = max(len(history) - 1, 0)
st.markdown(
    f"**Live** {md_code(live.hash())} · **candidate** "
    + (
        f"{md_code(candidate.hash())} ({md_escape(describe_vs_live(candidate, live))})"
        if candidate is not None
        else "none handed over"
    )
    + f" · **{past:,}** past live config{'' if past == 1 else 's'} · **{len(saved):,}** saved file"
    + ("" if len(saved) == 1 else "s")
)


def download(label: str, kind: str, config, key: str) -> None:
    st.download_button(
        label,  # md-safe: every label is a literal of this page
        cv.config_json(config),
        file_name=cv.config_file_name(kind, config),
        mime="application/json",
        key=key,
        icon=":material/download:",
        on_click="ignore",
    )


def diff_table(other, key: str, what: str) -> None:
    """The parameters that differ from the live config now to ``other`` (or a line saying none does)."""
    changes = config_diff(live, other)
    if not changes:
        st.caption(f"{md_escape(what)} is identical to the live config: no parameter differs.")
        return
    st.dataframe(cv.diff_frame(changes), hide_index=True, width="stretch", key=key)


# --------------------------------------------------------------------------- live

st.header("Live config")
st.markdown(f"{md_code(live.hash())} · {md_escape(cv.live_origin(live_info))}")
n_default = cv.changed_from_defaults(live)
st.caption(
    "What production runs: the old system of every rollout, and every entity no rollout has exposed. "
    + (
        "All parameters are at their defaults."
        if n_default == 0
        else f"{n_default:,} of {len(PARAMETER_SPECS)} parameters differ from the defaults."
    )
)
st.dataframe(cv.params_frame(live), hide_index=True, width="stretch", key="configs_live_params")
download("Download the live config (JSON)", "live", live, "configs_dl_live")

# --------------------------------------------------------------------------- candidate

st.header("Handed-over candidate")
if not cand_info or candidate is None:
    st.info(
        "No candidate handed over: hand one over from a tuning study's winner, or start a rollout with a config "
        "file on the Rollout page (a rollout of the live config itself runs only as a dry run)."
    )
else:
    st.markdown(f"{md_code(candidate.hash())} · {md_escape(cv.candidate_origin(cand_info))}")
    relation = describe_vs_live(candidate, live)
    if candidate == live:
        st.warning(
            f"The candidate is {md_escape(relation)}: a rollout of it would compare the live config with itself. "
            "Hand over another config."
        )
    else:
        st.caption(f"The candidate: {md_escape(relation)}.")
        diff_table(candidate, "configs_candidate_diff", "The candidate")
    download("Download the candidate (JSON)", "candidate", candidate, "configs_dl_candidate")

# --------------------------------------------------------------------------- history

st.header("Past live configs")
if not history:
    st.info("No rollout has made a config live yet: production runs the defaults.")
else:
    st.dataframe(cv.history_frame(history, live), hide_index=True, width="stretch", key="configs_history")
    for i, entry in enumerate(history[:EXPANDERS_SHOWN]):
        if entry.current:
            continue  # the live config itself: shown in full above
        run = f"run {entry.run_id}" if entry.run_id is not None else "a rollout"
        title = f"{entry.hash} · live from {cv.when(entry.at)} · {run} · by {entry.actor or 'unknown'}"
        with st.expander(md_escape(title)):
            if entry.config is None:
                st.caption(md_escape(cv.NOT_RECORDED.capitalize()) + ".")
                continue
            diff_table(entry.config, f"configs_history_diff_{i}", "This config")
            kind = f"run-{entry.run_id}" if entry.run_id is not None else "past"
            download("Download this config (JSON)", kind, entry.config, f"configs_dl_history_{i}")

# --------------------------------------------------------------------------- saved files

st.header("Saved config files")
st.caption(f"ParameterConfig JSON files in {md_code(configs_dir(settings))}, where tuning's handoff writes them.")
if not saved:
    st.info("No config files saved in this data dir yet.")
else:
    st.dataframe(cv.saved_frame(saved, live), hide_index=True, width="stretch", key="configs_saved")
    for i, item in enumerate(saved[:EXPANDERS_SHOWN]):
        relation = describe_vs_live(item.config, live) if item.config is not None else "not a valid config"
        with st.expander(f"{md_escape(item.name)} · {md_escape(relation)}"):
            if item.config is None:
                st.error(md_escape(item.problem or "not a valid config"))
                continue
            st.caption(f"{md_code(item.hash)} · {md_escape(relation)}")
            diff_table(item.config, f"configs_saved_diff_{i}", "This file")
            download("Download (JSON)", slug(item.path.stem) or "saved", item.config, f"configs_dl_saved_{i}")
