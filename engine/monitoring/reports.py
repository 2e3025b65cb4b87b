"""Reports over a window: Markdown, JSON and self-contained HTML.

``build_report`` reads the store once (metric events of the window, alert
states) and computes everything; the three renderers only format that data.
Markdown and HTML draw the same sections (``sections(report)``). The HTML adds
the Overview's own altair charts (engine.monitoring.charts), rendered offline to
inline SVG, so the file opens offline and reads like the console: no script, no
CDN, no external reference of any kind.

Each format escapes for itself: every text that reaches HTML goes through
``html.escape``; Markdown lines and cells go through ``md_cell`` (backslash
escapes, never HTML entities, which a plain-text reader would see as ``&amp;``).
So an entity name, a rule id or an operator's note is shown as the characters
it is made of wherever the file is opened (``Evil ![pixel](http://host/t.png)``
draws no image and fetches nothing).

Each report states its window, the config hash(es) seen, its generation time
and the percentile method. Latency is named as in the console: the run latency
(evidence + engine), apart from the engine's own time per entity.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.core.errors import ConfigError
from engine.monitoring.alerts import AlertRecord, AlertRule, current_states
from engine.monitoring.charts import (
    ENGINE_TIME,
    LIVE_METRICS,
    RUN_LATENCY,
    SYSTEM_COLOURS,
    confidence_chart,
    metric_chart,
    series_frame,
    to_svg,
)
from engine.monitoring.events import MetricEvent, query_events
from engine.monitoring.windows import (
    HISTOGRAM_BUCKETS,
    GroupStats,
    SeriesPoint,
    WindowSummary,
    default_bucket,
    format_window,
    parse_window,
    series_from_events,
    summarize_events,
)

FORMATS = ("md", "json", "html")
MEDIA_TYPES = {"md": "text/markdown", "json": "application/json", "html": "text/html"}
TOP_RUNS = 20


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Report:
    window_label: str
    stage_id: str | None
    summary: WindowSummary
    bucket_s: float
    series: tuple[SeriesPoint, ...]
    alerts: tuple[AlertRecord, ...]
    rules: tuple[AlertRule, ...]
    top_cost_runs: tuple[MetricEvent, ...]
    actionable_runs: tuple[MetricEvent, ...]
    title: str = "Discovery Ops report"
    schema_version: int = 1
    notes: tuple[str, ...] = field(default=())

    @property
    def generated_at(self) -> float:
        return self.summary.generated_at


def build_report(
    ops,
    window: str | float,
    *,
    now: float,
    stage_id: str | None = None,
    rules: Sequence[AlertRule] = (),
    top: int = TOP_RUNS,
) -> Report:
    """Everything a report shows, for the window ending ``now``, read from the store once.

    ``window`` is a duration text (``24h``, kept as the report's label) or seconds.
    """
    window_s = parse_window(window)
    label = window.strip() if isinstance(window, str) else format_window(window_s)
    start = now - window_s
    events = query_events(ops, start, now, stage_id=stage_id)
    summary = summarize_events(events, start=start, end=now, now=now)
    bucket = default_bucket(window_s)
    actionable = {}
    for e in events:  # the latest actionable run per (entity, system)
        if e.actionable:
            actionable[(e.entity_id, e.system)] = e
    states = current_states(ops)
    return Report(
        window_label=label,
        stage_id=stage_id,
        summary=summary,
        bucket_s=bucket,
        series=tuple(series_from_events(events, bucket)),
        alerts=tuple(states.values()),
        rules=tuple(rules),
        top_cost_runs=tuple(sorted(events, key=lambda e: (-e.cost_usd, e.at))[:top]),
        actionable_runs=tuple(sorted(actionable.values(), key=lambda e: (-e.at, e.entity_id))[: max(top, 50)]),
    )


def report_filename(now: float, window_label: str, fmt: str) -> str:
    """e.g. ``discovery-report-2026-11-27T2105Z-24h.html``."""
    _check_format(fmt)
    return f"discovery-report-{time.strftime('%Y-%m-%dT%H%MZ', time.gmtime(now))}-{window_label}.{fmt}"


def render(report: Report, fmt: str) -> str:
    _check_format(fmt)
    return {"md": to_markdown, "json": to_json, "html": to_html}[fmt](report)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"report format {fmt!r} is not one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- formatting helpers


#: how a number that is not there or not finite reads (the words of console.vocab, which engine cannot import)
NOT_AVAILABLE = "n/a"
NO_UPPER_BOUND = "no upper bound"


def _shown(x: float | None, render: Callable[[float], str]) -> str:
    """``render(x)``, or what a value that is not there (None, NaN) or not finite reads as."""
    if x is None or math.isnan(x):
        return NOT_AVAILABLE
    if math.isinf(x):
        return NO_UPPER_BOUND if x > 0 else "no lower bound"
    return render(x)


def iso(ts: float | None) -> str:
    return "n/a" if ts is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def usd(x: float | None, digits: int = 3) -> str:
    return _shown(x, lambda v: f"${v:,.{digits}f}")


def pct(x: float | None) -> str:
    """A fraction as a percentage."""
    return _shown(x, lambda v: f"{v * 100:.1f}%")


def signed_pct(x: float | None) -> str:
    """A value already in percent, with its sign."""
    return _shown(x, lambda v: f"{v:+.1f}%")


def secs(x: float | None) -> str:
    return _shown(x, lambda v: f"{v:.2f} s")


def num(x: float | None, digits: int = 2, unit: str = "") -> str:
    return _shown(x, lambda v: f"{v:,.{digits}f}{unit}")


def ms(x: float | None) -> str:
    return num(x, 2, " ms")


def entity_label(e: MetricEvent) -> str:
    return e.entity_name or e.entity_id


# --------------------------------------------------------------------------- sections (shared by md and html)


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[str, ...] = ()  # paragraphs / bullet lines, plain text
    tables: tuple[Table, ...] = ()
    chart: str = ""  # a key of CHARTS, drawn in HTML only


SUMMARY_ROWS: tuple[tuple[str, Callable[[GroupStats], str]], ...] = (
    ("runs (entities)", lambda g: f"{g.runs} ({g.entities})"),
    ("shadow runs", lambda g: str(g.shadow_runs)),
    ("cost total", lambda g: usd(g.cost_total, 2)),
    ("cost per entity", lambda g: usd(g.cost_per_entity)),
    ("cost per hypothesis tested", lambda g: usd(g.cost_per_hypothesis)),
    ("actionable", lambda g: f"{g.actionable} ({pct(g.actionable_rate)})"),
    ("promotion rate (of hypotheses tested)", lambda g: pct(g.promotion_rate)),
    ("accuracy where truth is known", lambda g: f"{pct(g.accuracy)} (n={g.scored})"),
    ("iterations mean / max", lambda g: f"{num(g.iterations_mean)} / {g.iterations_max}"),
    (f"{RUN_LATENCY}, mean", lambda g: secs(g.latency_s.mean)),
    (
        f"{RUN_LATENCY}, p50 / p95 / p99",
        lambda g: " / ".join(secs(v) for v in (g.latency_s.p50, g.latency_s.p95, g.latency_s.p99)),
    ),
    (f"{ENGINE_TIME}, p50 / p95", lambda g: f"{ms(g.engine_latency_ms.p50)} / {ms(g.engine_latency_ms.p95)}"),
    ("error rate (errored hops / hops)", lambda g: f"{pct(g.error_rate)} ({g.errors}/{g.hops})"),
    ("runs with an error", lambda g: str(g.runs_with_errors)),
)


def _comparison_lines(c) -> tuple[str, ...]:
    sizes = f"old n={c.old_runs}, new n={c.new_runs}"
    lines = [
        f"Cost per entity: old {usd(c.old_cost_per_entity)}, new {usd(c.new_cost_per_entity)}; "
        f"reduction {signed_pct(c.cost_reduction_pct)} ({sizes})",
        f"Actionable rate: old {pct(c.old_actionable_rate)}, new {pct(c.new_actionable_rate)}; "
        f"increase {signed_pct(c.actionable_increase_pct)}"
        + ("" if c.actionable_increase_pp is None else f" ({c.actionable_increase_pp:+.1f} points)")
        + f" ({sizes})",
    ]
    if c.reason:
        lines.append(f"Not computed: {c.reason}.")
    return tuple(lines)


def sections(r: Report) -> list[Section]:
    s = r.summary
    groups = [("new", s.by_system["new"]), ("old", s.by_system["old"]), ("all", s.overall)]
    hashes = "; ".join(f"{sys}: {', '.join(h)}" for sys, h in s.config_hashes.items()) or "none (no runs)"
    out = [
        Section(
            "Window",
            (
                f"Window: {iso(s.start)} to {iso(s.end)} (last {r.window_label}; start inclusive, end exclusive)",
                f"Generated: {iso(s.generated_at)}",
                f"Stage: {r.stage_id or 'all stages'}",
                f"Config hashes: {hashes}",
                f"Percentile method: {s.percentile_method}",
                "Cost per entity = cost / runs (one run covers one entity); "
                f"{RUN_LATENCY} = evidence latency + engine time, per run; "
                f"{ENGINE_TIME} = the engine's own decision time.",
            ),
        ),
        Section(
            "Summary by system",
            tables=(
                Table(
                    ("figure",) + tuple(n for n, _ in groups),
                    tuple((label, *(fn(g) for _, g in groups)) for label, fn in SUMMARY_ROWS),
                ),
            ),
        ),
        Section("Old vs new", _comparison_lines(s.comparison)),
    ]
    stage_rows = []
    for st in s.stages:
        for sys in ("new", "old"):
            g = st.by_system[sys]
            if g.runs:
                stage_rows.append(
                    (
                        st.stage_id,
                        sys,
                        str(g.runs),
                        usd(g.cost_per_entity),
                        pct(g.actionable_rate),
                        secs(g.latency_s.p95),
                        pct(g.error_rate),
                        signed_pct(st.comparison.cost_reduction_pct),
                        signed_pct(st.comparison.actionable_increase_pct),
                    )
                )
    out.append(
        Section(
            "By stage",
            () if stage_rows else ("No runs in the window.",),
            (
                Table(
                    (
                        "stage",
                        "system",
                        "runs",
                        "cost/entity",
                        "actionable rate",
                        f"p95 {RUN_LATENCY}",
                        "error rate",
                        "cost reduction (stage)",
                        "actionable increase (stage)",
                    ),
                    tuple(stage_rows),
                ),
            )
            if stage_rows
            else (),
        )
    )
    types = sorted(set(s.by_system["new"].errors_by_type) | set(s.by_system["old"].errors_by_type))
    out.append(
        Section(
            "Errors by type",
            () if types else ("No errors in the window.",),
            (
                Table(
                    ("type", "new count", "new rate", "old count", "old rate"),
                    tuple(
                        (
                            t,
                            str(s.by_system["new"].errors_by_type.get(t, 0)),
                            pct(s.by_system["new"].error_rate_by_type.get(t)),
                            str(s.by_system["old"].errors_by_type.get(t, 0)),
                            pct(s.by_system["old"].error_rate_by_type.get(t)),
                        )
                        for t in types
                    ),
                ),
            )
            if types
            else (),
        )
    )
    edges = [(i / HISTOGRAM_BUCKETS, (i + 1) / HISTOGRAM_BUCKETS) for i in range(HISTOGRAM_BUCKETS)]
    out.append(
        Section(
            "Confidence histogram",
            ("Final confidence of every hypothesis of the runs; buckets [a, b), the last [0.9, 1.0] includes 1.0.",),
            (
                Table(
                    ("bucket", "new", "old"),
                    tuple(
                        (
                            f"[{a:.1f}, {b:.1f}{']' if i == HISTOGRAM_BUCKETS - 1 else ')'}",
                            str(s.by_system["new"].confidence_histogram[i]),
                            str(s.by_system["old"].confidence_histogram[i]),
                        )
                        for i, (a, b) in enumerate(edges)
                    ),
                ),
            ),
            chart="histogram",
        )
    )
    out.append(
        Section(
            f"Over time (buckets of {format_window(r.bucket_s)})",
            () if r.series else ("No runs in the window.",),
            (
                Table(
                    (
                        "bucket start (UTC)",
                        "system",
                        "runs",
                        "cost/entity",
                        "actionable rate",
                        f"p95 {RUN_LATENCY}",
                        "error rate",
                    ),
                    tuple(
                        (
                            iso(p.bucket_start),
                            p.system,
                            str(p.runs),
                            usd(p.cost_per_entity),
                            pct(p.actionable_rate),
                            secs(p.latency_p95_s),
                            pct(p.error_rate),
                        )
                        for p in r.series
                    ),
                ),
            )
            if r.series
            else (),
            chart="series" if r.series else "",
        )
    )
    rules = {rule.id: rule for rule in r.rules}
    alert_rows = []
    for a in r.alerts:
        rule = rules.get(a.rule_id)
        alert_rows.append(
            (
                a.rule_id,
                a.state.value.replace("_", " "),
                iso(a.since),
                rule.metric.format_value(a.value) if rule else num(a.value, 4),
                rule.condition() if rule else "",
                rule.severity.value if rule else "",
                f"{a.acknowledged_by} at {iso(a.acknowledged_at)}" if a.acknowledged else "",
                a.reason,
            )
        )
    last_eval = max((a.evaluated_at for a in r.alerts), default=None)
    out.append(
        Section(
            "Alerts",
            (
                f"States as last evaluated ({iso(last_eval)})."
                if alert_rows
                else "No alert has been evaluated yet (python -m engine alerts --evaluate).",
            ),
            (
                Table(
                    ("rule", "state", "since", "value", "condition", "severity", "acknowledged", "reason"),
                    tuple(alert_rows),
                ),
            )
            if alert_rows
            else (),
        )
    )
    run_headers = ("entity", "id", "system", "stage", "cost", "actionable", "hops", "errors", "at")

    def run_row(e: MetricEvent) -> tuple[str, ...]:
        return (
            entity_label(e),
            e.entity_id,
            e.system,
            e.stage_id or "",
            usd(e.cost_usd),
            "yes" if e.actionable else "no",
            str(e.hops),
            str(e.error_count),
            iso(e.at),
        )

    out.append(
        Section(
            f"Most expensive runs (top {len(r.top_cost_runs)})",
            () if r.top_cost_runs else ("No runs in the window.",),
            (Table(run_headers, tuple(run_row(e) for e in r.top_cost_runs)),) if r.top_cost_runs else (),
        )
    )
    out.append(
        Section(
            f"Actionable entities ({len(r.actionable_runs)}, latest run per entity and system)",
            () if r.actionable_runs else ("No actionable entity in the window.",),
            (Table(run_headers, tuple(run_row(e) for e in r.actionable_runs)),) if r.actionable_runs else (),
        )
    )
    return out


# --------------------------------------------------------------------------- Markdown


#: Characters that start inline Markdown in a line or a table cell: escapes, code, links and images
#: (``[`` and ``]``: an escaped bracket makes neither ``[x](url)`` nor ``![x](url)``), and emphasis or
#: strikethrough marks unless they stand alone between spaces ("q/100 * n" can never be emphasis, so
#: the report's own prose stays readable as plain text). HTML is Markdown too: ``<`` before a letter,
#: ``/``, ``!`` or ``?`` would open a tag, a comment or an autolink, and ``&`` before ``name;`` or ``#123;``
#: would be a character reference; a lone ``&`` or ``<`` ("Hyndman & Fan", "p95 < 30 s") is plain text.
_INLINE_MARKUP = re.compile(r"[\\`\[\]]|(?<=\S)[*_~]|[*_~](?=\S)|<(?=[A-Za-z/!?])|&(?=#?\w+;)")


def md_cell(text: str) -> str:
    """``text`` for a Markdown line or table cell: shown as it is, never as markup.

    Escapes are Markdown's own backslashes, never HTML entities (a reader of the plain file would see
    ``&amp;``): a ``<`` that would open a tag and an ``&`` that would start a reference get a backslash,
    as does every character that could start a link, an image, code or emphasis; ``|`` cannot end a
    cell and line breaks become spaces. Block markup (headings, lists) cannot start inside a line the
    report begins.
    """
    escaped = str(text).replace("\r", " ").replace("\n", " ")
    return _INLINE_MARKUP.sub(lambda m: "\\" + m.group(0), escaped).replace("|", "\\|")


def to_markdown(r: Report) -> str:
    out = [f"# {md_cell(r.title)}: last {md_cell(r.window_label)}", ""]
    for sec in sections(r):
        out += [f"## {md_cell(sec.title)}", ""]
        bullets = sec.title == "Window" or sec.title == "Old vs new"
        for line in sec.lines:
            out.append(f"- {md_cell(line)}" if bullets else md_cell(line))
        if sec.lines:
            out.append("")
        for t in sec.tables:
            out.append("| " + " | ".join(md_cell(h) for h in t.headers) + " |")
            out.append("|" + "|".join("---" for _ in t.headers) + "|")
            out += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in t.rows]
            out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- JSON


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def to_dict(r: Report) -> dict[str, Any]:
    s = r.summary
    return _jsonable(
        {
            "schema_version": r.schema_version,
            "title": r.title,
            "window": {
                "label": r.window_label,
                "start": s.start,
                "end": s.end,
                "start_iso": iso(s.start),
                "end_iso": iso(s.end),
                "end_exclusive": True,
                "stage_id": r.stage_id,
            },
            "generated_at": s.generated_at,
            "generated_at_iso": iso(s.generated_at),
            "percentile_method": s.percentile_method,
            "config_hashes": {k: list(v) for k, v in s.config_hashes.items()},
            "overall": asdict(s.overall),
            "by_system": {k: asdict(v) for k, v in s.by_system.items()},
            "comparison": asdict(s.comparison) | {"cost_increase_pct": s.comparison.cost_increase_pct},
            "stages": [
                {
                    "stage_id": st.stage_id,
                    "by_system": {k: asdict(v) for k, v in st.by_system.items()},
                    "comparison": asdict(st.comparison),
                }
                for st in s.stages
            ],
            "series": {"bucket_s": r.bucket_s, "points": [asdict(p) for p in r.series]},
            "alerts": [asdict(a) | {"state": a.state.value} for a in r.alerts],
            "rules": [rule.to_json() for rule in r.rules],
            "top_cost_runs": [e.to_json() for e in r.top_cost_runs],
            "actionable_runs": [e.to_json() for e in r.actionable_runs],
        }
    )


def to_json(r: Report) -> str:
    return json.dumps(to_dict(r), indent=2, sort_keys=False, allow_nan=False) + "\n"


# --------------------------------------------------------------------------- HTML with inline SVG

esc = html.escape  # quote=True: safe in text and in attribute values

CSS = (
    "\n"
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;"
    "max-width:1100px;color:#222;padding:0 1rem}\n"
    "h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;"
    "padding-bottom:.2rem}\n"
    "table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}\n"
    "th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}\n"
    "th{background:#f4f4f4}td.num{text-align:right}\n"
    ".charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{border:1px solid #eee;padding:.5rem}\n"
    ".chart svg{max-width:100%;height:auto}\n"
    "p.meta{margin:.2rem 0}\n"
)


#: the HTML report's time series: the Overview's live charts (engine.monitoring.charts.LIVE_METRICS)
SERIES_CHARTS = LIVE_METRICS


def chart_svgs(r: Report, key: str) -> list[str]:
    """The inline SVGs of a section's charts: the console's altair charts, rendered offline."""
    if key == "histogram":
        ran = any(r.summary.by_system[system].runs for system in SYSTEM_COLOURS)
        return [to_svg(confidence_chart(r.summary), prefix="histogram")] if ran else []
    if key == "series":
        frame = series_frame(r.series)
        return [to_svg(metric_chart(frame, m, r.window_label), prefix=m.field) for m in SERIES_CHARTS]
    return []


def _charts(r: Report, key: str) -> str:
    svgs = chart_svgs(r, key)
    if not svgs:
        return '<p class="meta">no data to chart</p>' if key else ""
    return '<div class="charts">' + "".join(f'<div class="chart">{svg}</div>' for svg in svgs) + "</div>"


def to_html(r: Report) -> str:
    body = [f"<h1>{esc(r.title)}: last {esc(r.window_label)}</h1>"]
    for sec in sections(r):
        body.append(f"<h2>{esc(sec.title)}</h2>")
        body += [f'<p class="meta">{esc(line)}</p>' for line in sec.lines]
        if sec.chart:
            body.append(_charts(r, sec.chart))
        for t in sec.tables:
            head = "".join(f"<th>{esc(h)}</th>" for h in t.headers)
            rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in t.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(r.title)}: last {esc(r.window_label)}, generated {esc(iso(r.generated_at))}</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
