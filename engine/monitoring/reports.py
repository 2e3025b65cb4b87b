"""Reports over a window: Markdown, JSON and self-contained HTML.

``build_report`` reads the store once (metric events of the window, alert
states) and computes everything; the three renderers only format that data.
Markdown and HTML draw the same sections (``sections(report)``), the HTML adds
hand-made inline SVG charts, so the file opens offline: no script, no CDN, no
external reference of any kind. Every text that reaches HTML goes through
``html.escape``; Markdown cells and lines go through ``md_cell``, so an entity
name, a rule id or an operator's note is shown as the characters it is made of
wherever the file is opened (``Evil ![pixel](http://host/t.png)`` draws no
image and fetches nothing).

Each report states its window, the config hash(es) seen, its generation time
and the percentile method.
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
SYSTEM_COLOURS = {"new": "#4c78a8", "old": "#f58518"}
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


def iso(ts: float | None) -> str:
    return "n/a" if ts is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def usd(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"${x:,.{digits}f}"


def pct(x: float | None) -> str:
    """A fraction as a percentage."""
    return "n/a" if x is None else f"{x * 100:.1f}%"


def signed_pct(x: float | None) -> str:
    """A value already in percent, with its sign."""
    return "n/a" if x is None else f"{x:+.1f}%"


def secs(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


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
    ("latency mean", lambda g: secs(g.latency_s.mean)),
    (
        "latency p50 / p95 / p99",
        lambda g: " / ".join(secs(v) for v in (g.latency_s.p50, g.latency_s.p95, g.latency_s.p99)),
    ),
    ("engine time p50 / p95 (ms)", lambda g: f"{num(g.engine_latency_ms.p50)} / {num(g.engine_latency_ms.p95)}"),
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
                "latency = evidence latency + engine time per run.",
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
                        "p95 latency",
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
                    ("bucket start", "system", "runs", "cost/entity", "actionable rate", "p95 latency", "error rate"),
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
                a.state.value,
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
#: the report's own prose stays readable as plain text).
_INLINE_MARKUP = re.compile(r"[\\`\[\]]|(?<=\S)[*_~]|[*_~](?=\S)")


def md_cell(text: str) -> str:
    """``text`` for a Markdown line or table cell: shown as it is, never as markup.

    HTML's ``& < >`` become entities (no tag, no autolink), ``|`` cannot end a cell, line breaks
    become spaces, and every character that could start a link, an image, code or emphasis gets
    a backslash. Block markup (headings, lists) cannot start inside a line the report begins.
    """
    escaped = (
        str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", " ").replace("\n", " ")
    )
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
    ".legend span{display:inline-block;margin-right:1rem}.swatch{display:inline-block;width:.8rem;"
    "height:.8rem;margin-right:.3rem}\n"
    "p.meta{margin:.2rem 0}\n"
)


def _svg_line_chart(
    title: str,
    points: Sequence[SeriesPoint],
    value: Callable[[SeriesPoint], float | None],
    fmt: Callable[[float | None], str],
    bucket_s: float,
    width: int = 520,
    height: int = 220,
) -> str:
    left, right, top, bottom = 64, 12, 28, 34
    pw, ph = width - left - right, height - top - bottom
    data: list[tuple[float, float, str]] = []
    for p in points:
        v = value(p)
        if v is not None:
            data.append((p.bucket_start, v, p.system))
    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    if not data:
        parts.append(f'<text x="{left}" y="{top + ph / 2}" font-size="12" fill="#888">no data</text></svg>')
        return "".join(parts)
    xs = [d[0] for d in data]
    x0, x1 = min(xs), max(xs) + bucket_s
    ymax = max(d[1] for d in data)
    ymax = ymax * 1.1 if ymax > 0 else 1.0

    def sx(x: float) -> float:
        return left + (x + bucket_s / 2 - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - y / ymax * ph

    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#999"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#999"/>')
    for frac in (0.0, 0.5, 1.0):
        y = ymax * frac
        parts.append(f'<text x="{left - 4}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end">{esc(fmt(y))}</text>')
    parts.append(f'<text x="{left}" y="{height - 8}" font-size="10">{esc(iso(x0))}</text>')
    parts.append(f'<text x="{left + pw}" y="{height - 8}" font-size="10" text-anchor="end">{esc(iso(x1))}</text>')
    for system in sorted({d[2] for d in data}):
        colour = SYSTEM_COLOURS.get(system, "#666")
        pts = [(x, y) for x, y, s in data if s == system]
        # a gap of more than one bucket breaks the line: an empty bucket is missing data, not zero
        run: list[tuple[float, float]] = []
        for x, y in pts + [(math.inf, 0.0)]:
            if run and x - run[-1][0] > bucket_s * 1.5:
                if len(run) > 1:
                    coords = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in run)
                    parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
                run = []
            run.append((x, y))
        for x, y in pts:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}">'
                f"<title>{esc(f'{system} {iso(x)}: {fmt(y)}')}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _svg_histogram(s: WindowSummary, width: int = 520, height: int = 220) -> str:
    left, right, top, bottom = 44, 12, 28, 34
    pw, ph = width - left - right, height - top - bottom
    title = "Final confidence of hypotheses"
    systems = [sys for sys in ("new", "old") if s.by_system[sys].runs]
    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    if not systems:
        parts.append(f'<text x="{left}" y="{top + ph / 2}" font-size="12" fill="#888">no data</text></svg>')
        return "".join(parts)
    ymax = max(max(s.by_system[sys].confidence_histogram) for sys in systems) or 1
    slot = pw / HISTOGRAM_BUCKETS
    bar = (slot - 4) / len(systems)
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#999"/>')
    parts.append(f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">{ymax}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + ph}" font-size="10" text-anchor="end">0</text>')
    for i in range(HISTOGRAM_BUCKETS):
        for j, sys in enumerate(systems):
            n = s.by_system[sys].confidence_histogram[i]
            h = n / ymax * ph
            x = left + i * slot + 2 + j * bar
            label = f"{sys} [{i / 10:.1f}, {(i + 1) / 10:.1f}{']' if i == HISTOGRAM_BUCKETS - 1 else ')'}: {n}"
            parts.append(
                f'<rect x="{x:.1f}" y="{top + ph - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{SYSTEM_COLOURS[sys]}"><title>{esc(label)}</title></rect>'
            )
        parts.append(
            f'<text x="{left + i * slot + slot / 2:.1f}" y="{top + ph + 14}" font-size="10" '
            f'text-anchor="middle">{i / 10:.1f}</text>'
        )
    parts.append(f'<text x="{left + pw}" y="{top + ph + 14}" font-size="10" text-anchor="end">1.0</text>')
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> str:
    return (
        '<p class="legend">'
        + "".join(
            f'<span><span class="swatch" style="background:{c}"></span>{esc(s)}</span>'
            for s, c in SYSTEM_COLOURS.items()
        )
        + "</p>"
    )


def _charts(r: Report, key: str) -> str:
    if key == "histogram":
        return f'<div class="charts"><div class="chart">{_svg_histogram(r.summary)}</div></div>{_legend()}'
    if key == "series":
        specs = (
            ("Cost per entity", lambda p: p.cost_per_entity, usd),
            ("Actionable rate", lambda p: p.actionable_rate, pct),
            ("p95 latency", lambda p: p.latency_p95_s, secs),
            ("Error rate", lambda p: p.error_rate, pct),
        )
        charts = "".join(
            f'<div class="chart">{_svg_line_chart(t, r.series, f, fmt, r.bucket_s)}</div>' for t, f, fmt in specs
        )
        return f'<div class="charts">{charts}</div>{_legend()}'
    return ""


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
