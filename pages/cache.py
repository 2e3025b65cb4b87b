"""Cache: the console's hypothesis cache — hit rate, size, evictions, most accessed, warming — and the
store benchmark, which runs as a job in a worker process while this page polls its progress.

Thin: statistics come from this process's CacheService (console.services.get_cache_service),
buttons call one engine function each (console.feedback), the benchmark is engine.bench.store.
"""

from __future__ import annotations

import json

import streamlit as st

from console import cache_view as cv
from console.feedback import Feedback
from console.identity import actor, needs, operator_field
from console.services import call, get_cache_service, get_services
from console.text import md_escape
from console.vocab import human
from engine.bench import store as bench_store
from engine.cache import service as cache_service
from engine.cache.warmer import list_warm_runs
from engine.jobs.queue import JobState, get_job, latest_job

REFRESH_S = 2.0
TILES_PER_ROW = 3
ss = st.session_state

services = get_services()
operator_field()  # one name for every page of this tab (console.identity)
settings, ops = services.settings, services.ops
service = call(get_cache_service, services)

st.title("Cache")
st.caption(
    "Hypothesis reads of this console go through an LRU cache with a TTL and a memory limit; every write "
    "through it updates or drops the entries it touches. A warmer loads recently read entities, the "
    "clusters with recent discovery activity and popular templates. The CLI sees the same figures: "
    "`python -m engine cache stats`."
)


feedback = Feedback("cache_flash")
#: the benchmark's message is drawn by its polling fragment, which replaces it with the job's own state
bench_feedback = Feedback("cache_bench_flash")


def warm_now() -> None:
    feedback.act(
        "Warm now",
        cache_service.warm_now,
        service,
        ops,
        actor=actor(),
        done=cv.warm_message,
    )


def clear_cache() -> None:
    feedback.act(
        "Clear cache",
        cache_service.clear,
        service,
        ops,
        actor=actor(),
        done=lambda n: f"Clear cache: {n:,} entries dropped",
    )


def save_interval() -> None:
    feedback.act(
        "Interval",
        cache_service.set_warm_interval,
        ops,
        float(ss["cache_interval"]),
        actor=actor(),
        done=lambda s: "Periodic warming off" if s == 0 else f"Periodic warming every {s:g} s",
    )


def run_bench() -> None:
    job_id = bench_feedback.act(
        "Benchmark",
        bench_store.submit_bench_job,
        settings,
        ops,
        entities=int(ss["cache_bench_entities"]),
        growth=10 if ss["cache_bench_growth"] else 1,
        actor=actor(),
        done=lambda job_id: f"Benchmark: job {job_id} queued for a worker process",
    )
    if job_id is not None:
        ss["cache_bench_job"] = job_id


feedback.show()

# a button the signed-in role may not use is drawn disabled with the role it needs (the engine refuses anyway)
warm_needs, clear_needs, interval_needs = needs("cache.warm"), needs("cache.clear"), needs("cache.interval")
with st.container(horizontal=True):  # buttons as wide as their labels, at any screen width
    st.button("Warm now", icon=":material/local_fire_department:", on_click=warm_now, key="cache_warm",
              # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
              disabled=bool(warm_needs), help=warm_needs)  # fmt: skip
    st.button("Clear cache", icon=":material/delete_sweep:", on_click=clear_cache, key="cache_clear",
              # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
              disabled=bool(clear_needs), help=clear_needs)  # fmt: skip


@st.fragment(run_every=REFRESH_S)
def live_stats() -> None:
    stats = service.cache.stats()
    tiles = cv.stat_tiles(stats)
    for row in (tiles[:TILES_PER_ROW], tiles[TILES_PER_ROW:]):  # two rows: every value whole at 1400 px
        for column, (label, value, help_) in zip(st.columns(TILES_PER_ROW), row):
            column.metric(label, value, help=help_, border=True)  # md-safe: cv.stat_tiles: constant labels, numbers
    left, right = st.columns(2)
    with left:
        st.subheader("Most accessed")
        frame = cv.most_accessed_frame(service.cache.most_accessed(20))
        if frame.empty:
            st.caption(cv.most_accessed_empty(stats.items))  # md-safe: a literal sentence and a count
        else:
            st.dataframe(frame, hide_index=True, width="stretch", key="cache_most_accessed")
    with right:
        st.subheader("Warming")
        w = service.warmer.stats()
        interval = cache_service.warm_interval(ops)
        st.write(
            f"{w.rounds:,} rounds ({w.failed_rounds:,} failed), {w.entries_loaded:,} cache entries loaded, "
            f"{w.seconds:,.2f} s spent; " + (f"every {interval:g} s" if interval else "periodic warming off")
        )
        runs = cv.warm_runs_frame(list_warm_runs(ops, 20))
        if not runs.empty:
            st.dataframe(runs, hide_index=True, width="stretch", key="cache_warm_runs")
    if service.last_error:
        st.warning(f"Last cache service error: {md_escape(service.last_error)}")


live_stats()

with st.expander("Periodic warming"):
    st.number_input("Warm every (seconds; 0 = off)", min_value=0.0, max_value=86_400.0, step=30.0,
                    value=float(cache_service.warm_interval(ops)), key="cache_interval")  # fmt: skip
    st.button("Save interval", on_click=save_interval, key="cache_save_interval", disabled=bool(interval_needs),
              # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
              help=interval_needs)  # fmt: skip

st.divider()
st.subheader("Store benchmark")
st.caption(
    "Seeds a catalogue into a temporary data dir with its own FalkorDB (your data is not touched) and measures "
    "batch reads, hot gets, batch vs row-by-row updates, a Zipf trace cold vs warmed and peak memory — the "
    "same figures as `python -m engine bench store`. It runs in a worker process."
)
with st.container(horizontal=True, vertical_alignment="bottom"):
    st.number_input(
        "Entities", min_value=10, max_value=100_000, value=3400, step=100, key="cache_bench_entities", width=180
    )
    st.checkbox(
        "Also at 10× the entities",
        value=False,
        key="cache_bench_growth",
        help="Adds a run at ten times the size and how each figure grew (takes several minutes).",
    )
    st.button("Run batch benchmark", icon=":material/speed:", on_click=run_bench, key="cache_bench_run",
              # md-safe: help is a literal or a role's name (console.identity.needs: "needs operator")
              disabled=bool(warm_needs), help=warm_needs)  # fmt: skip


def latest_bench_job():
    wanted = ss.get("cache_bench_job")
    return get_job(ops, int(wanted)) if wanted is not None else latest_job(ops, bench_store.JOB_KIND)


@st.fragment(run_every=REFRESH_S)
def bench_progress() -> None:
    bench_feedback.show()  # drawn once, then the job's own state below says what happens
    job = latest_bench_job()
    if job is None:
        st.caption("No benchmark has run yet.")
        return
    if job.state == JobState.DEAD:
        st.error(
            f"Benchmark job {job.id:d}: its worker process stopped ({md_escape(job.error or 'no heartbeat')}); "
            "run it again"
        )
        return
    if not job.state.is_terminal():
        total = f"{job.progress_total:,}" if job.progress_total else "?"
        what = job.message or ("waiting for a worker process" if job.state == JobState.QUEUED else "starting")
        st.progress(job.progress, text=f"Job {job.id:d} {md_escape(human(job.state))}: {md_escape(what)} "
                                       f"({job.progress_done:,}/{md_escape(total)})")  # fmt: skip
        return
    if job.state != JobState.SUCCEEDED or not job.result:
        st.error(f"Benchmark job {job.id:d} {md_escape(job.state)}: {md_escape(job.error or 'no result')}")
        return
    result = job.result
    st.success(f"Benchmark job {job.id:d} finished")
    st.altair_chart(cv.bench_chart(result["chart"]), width="stretch")
    st.dataframe(cv.bench_figures_frame(result["results"]), hide_index=True, width="stretch", key="cache_bench_table")
    with st.expander("Full report"):
        st.code(result["report"], language=None)
    st.download_button("Download the figures (JSON)", json.dumps(result["results"], indent=2).encode("utf-8"),
                       file_name=cv.bench_file_name(job.finished_at), mime="application/json",
                       key="cache_bench_download")  # fmt: skip


bench_progress()
