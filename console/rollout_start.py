"""The Rollout page's Start form as plain data: which evidence source, how many entities in flight, the
evaluator's limits, and what the run is estimated to cost before it starts.

Pure: no Streamlit and no stores. The page reads its widgets, hands them to ``source_choice`` (which
builds the engine's own values, so a bad value is the engine's one-line error) and draws what
``estimate_frame`` / ``estimate_summary`` make of engine.rollout.estimate's figures. A run's header
says the same in words (``source_text``, ``estimate_text``) from what the run stored at its start.

Why a start form asks all this: the simulated world and a replay file cost nothing real, but an HTTP
evaluator is the operator's own pipeline (search, fetch, an LLM judgement) and every hop is paid.
Against it the page shows the estimate per stage first, and above the budget the operator sets a
start needs a tick that names the figure (engine.rollout.estimate.CostNotConfirmed otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from engine.cli.args import MAX_TIMEOUT_S
from engine.discovery.limits import RunLimits
from engine.discovery.runs import EvidenceSpec, make_source
from engine.jobs.executor import MAX_WORKERS, SCHEDULER_ENV, ExecutorSpec, executor_spec
from engine.rollout.estimate import CostEstimate
from engine.rollout.stages import StageConfig, StagePolicy

WORLD, REPLAY, HTTP = "world", "replay", "http"
#: the Evidence choice of the Start form, in the order offered (the free, safe one first)
EVIDENCE_CHOICES = (WORLD, REPLAY, HTTP)
EVIDENCE_LABELS = {WORLD: "Simulated world", REPLAY: "Replay file", HTTP: "HTTP evaluator"}
#: the evaluator timeout the form starts with (the engine's default for an HTTP source)
DEFAULT_TIMEOUT_S = float(EvidenceSpec().timeout_s)
#: the longest timeout the form accepts (the CLI's bound on --evaluator-timeout)
TIMEOUT_MAX_S = MAX_TIMEOUT_S
#: what the URL field shows while empty (the local evaluator's path)
URL_PLACEHOLDER = "http://127.0.0.1:8000/evaluate"
#: "all" in the Stage choice: every stage of the table in order
ALL = "all"

ESTIMATE_COLUMNS = ("stage", "entities", "shadow fraction", "estimated cost")
#: the Workers field's bounds and its help (engine.jobs.executor)
WORKERS_MAX = MAX_WORKERS
WORKERS_HELP = (
    "Where each batch's entity runs (old in shadow, new live) happen: 1 runs them in the stage's own worker "
    f"process; more than 1 starts a local Dask cluster of that many processes on this machine while a stage runs "
    f"(or uses the running cluster named by {SCHEDULER_ENV}). The outcomes are the same either way; the worker "
    "alone writes the graph and the checkpoints."
)


def stage_concurrency_text(config: StageConfig) -> str:
    """Each stage's own entities in flight, as the stage table sets them: 'pilot 5, limited 10, production 32'."""
    return ", ".join(f"{s.name} {s.concurrency:,}" for s in config.stages)


def run_stage_policies(config: StageConfig, stage: str) -> list[StagePolicy]:
    """The stages a start at ``stage`` goes through (``all``: every one, in order); unknown: none."""
    if stage == ALL:
        return list(config.stages)
    return [config.stage(stage)] if stage in config.names() else []


@dataclass(frozen=True)
class SourceChoice:
    """What the Start form asks of engine.rollout.start_rollout about the evidence and the pace."""

    evidence: EvidenceSpec | None  # None: the simulated world of the run's world seed (the engine's default)
    concurrency: int | None  # None: each stage's own setting
    limits: RunLimits | None  # None: no hop rate or in-flight limit

    @property
    def paid(self) -> bool:
        return self.evidence is not None and self.evidence.kind == HTTP


def evidence_spec(kind: str, *, url: str = "", timeout_s: float = DEFAULT_TIMEOUT_S, replay_path: str = ""):
    """The EvidenceSpec of the form's choice (None for the simulated world); a missing URL or file is the
    engine's one-line ConfigError."""
    if kind == HTTP:
        return EvidenceSpec(kind=HTTP, url=url.strip(), timeout_s=float(timeout_s))
    if kind == REPLAY:
        return EvidenceSpec(kind=REPLAY, replay_path=replay_path.strip() or None)
    return None


def check_source(spec: EvidenceSpec | None) -> None:
    """Build an HTTP source now and close it: a URL that is not http(s) is refused with the engine's line
    before anything is written (start_rollout never contacts the evaluator, and building the source does
    not either). A replay file is read and checked by start_rollout itself."""
    if spec is None or spec.kind != HTTP:
        return
    source = make_source(spec)
    close = getattr(source, "close", None)
    if close is not None:
        close()


def source_choice(
    kind: str,
    *,
    url: str = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    replay_path: str = "",
    in_flight: int | None = None,
    max_hops_per_s: float | None = None,
    max_in_flight: int | None = None,
) -> SourceChoice:
    """The form's fields as engine values; any bad one raises the engine's one-line ConfigError.

    ``in_flight`` blank or 0 leaves each stage its own setting; the limits wrap the source only when one
    of them is set (RunLimits carries the run's concurrency too, 1 where each stage decides)."""
    spec = evidence_spec(kind, url=url, timeout_s=timeout_s, replay_path=replay_path)
    check_source(spec)
    concurrency = int(in_flight) if in_flight else None
    limits = None
    if max_hops_per_s is not None or max_in_flight is not None:
        limits = RunLimits(
            concurrency=concurrency or 1,
            max_hops_per_s=None if max_hops_per_s is None else float(max_hops_per_s),
            max_in_flight=None if max_in_flight is None else int(max_in_flight),
        )
    if concurrency is not None:
        RunLimits(concurrency=concurrency)  # 1..MAX_CONCURRENCY, refused in the engine's words
    return SourceChoice(spec, concurrency, limits)


def executor_choice(workers: int | None, *, env: Mapping[str, str] | None = None) -> ExecutorSpec:
    """The Workers field as the engine's ExecutorSpec: blank or 1 in the worker's process, N > 1 a local
    cluster of N processes, a running cluster when the console's environment names one; a bad value is the
    engine's one-line ConfigError."""
    return executor_spec(int(workers) if workers else None, env=env)


def executor_text(run: Any) -> str:
    """Where a run's batches run, in one plain line (runs from before the setting read as in-process)."""
    where = getattr(run, "executor", "") or "in this process"
    if where == "in this process":
        where = "in the stage's worker process"
    return f"Batches run: {where}"


def estimate_spec(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> EvidenceSpec:
    """The HTTP spec the estimate is computed for while the URL may still be empty (the figure does not
    depend on the URL: it comes from recorded runs)."""
    return EvidenceSpec(kind=HTTP, url=url.strip() or URL_PLACEHOLDER, timeout_s=float(timeout_s))


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _rows(estimate: CostEstimate | Mapping[str, Any]) -> list[dict[str, Any]]:
    if isinstance(estimate, CostEstimate):
        return [
            {"stage": s.stage, "entities": s.entities, "shadow_fraction": s.shadow_fraction, "usd": s.usd}
            for s in estimate.per_stage
        ]
    return [dict(s) for s in estimate.get("stages") or []]


def estimate_frame(estimate: CostEstimate | Mapping[str, Any]) -> pd.DataFrame:
    """One row per stage (entities it adds, shadow fraction, estimated cost) and a total row, as text cells."""
    rows = _rows(estimate)
    out = [
        {
            "stage": str(r["stage"]),
            "entities": f"{int(r['entities']):,}",
            "shadow fraction": f"{float(r['shadow_fraction']):.0%}",
            "estimated cost": _usd(float(r["usd"])),
        }
        for r in rows
    ]
    total = sum(float(r["usd"]) for r in rows)
    out.append(
        {
            "stage": "total",
            "entities": f"{sum(int(r['entities']) for r in rows):,}",
            "shadow fraction": "",
            "estimated cost": _usd(total),
        }
    )
    return pd.DataFrame(out, columns=list(ESTIMATE_COLUMNS))


def estimate_summary(estimate: CostEstimate, budget_usd: float | None) -> str:
    """The estimate in one plain line: the total, against the budget, and where each per-entity figure comes from."""
    verdict = ""
    if budget_usd is not None:
        verdict = (
            f": above your {_usd(budget_usd)} budget, so Start needs your confirmation"
            if estimate.needs_confirmation(budget_usd)
            else f": within your {_usd(budget_usd)} budget"
        )
    return (
        f"Estimated cost {_usd(estimate.total_usd)}{verdict}. A stage costs its entities × (new + shadow fraction × "
        f"old) per entity: new ${estimate.new.usd:.4f} ({estimate.new.basis}), old ${estimate.old.usd:.4f} "
        f"({estimate.old.basis})."
    )


def confirm_label(estimate: CostEstimate) -> str:
    """The tick a start above the budget needs; it names the figure it confirms."""
    return f"I confirm the estimated cost of {_usd(estimate.total_usd)}"


def limits_text(concurrency: int | None, limits: Mapping[str, Any] | None, stage_settings: str = "") -> str:
    """'8 entities in flight, at most 20 hops/s, at most 4 requests at once' / "each stage's setting (…)"."""
    if concurrency:
        text = f"{concurrency:,} entities in flight"
    else:
        text = "entities in flight: each stage's setting" + (f" ({stage_settings})" if stage_settings else "")
    limits = limits or {}
    if limits.get("max_hops_per_s") is not None:
        text += f", at most {float(limits['max_hops_per_s']):g} hops/s"
    if limits.get("max_in_flight") is not None:
        text += f", at most {int(limits['max_in_flight']):,} requests at once"
    return text


def source_text(run: Any, stage_settings: str = "") -> str:
    """A run's evidence and pace in one plain line (runs from before the setting read as the simulated world)."""
    evidence = getattr(run, "evidence", "") or "simulated world"
    pace = limits_text(getattr(run, "concurrency", None), getattr(run, "limits", None), stage_settings)
    return f"Evidence: {evidence} · {pace}"


def estimate_text(cost_estimate: Mapping[str, Any] | None) -> str:
    """The estimate recorded at the run's start in one plain line ('' when the run has none)."""
    if not cost_estimate:
        return ""
    stages = ", ".join(
        f"{r['stage']} {int(r['entities']):,} entities {_usd(float(r['usd']))}" for r in _rows(cost_estimate)
    )
    free = "" if cost_estimate.get("paid") else " (this source costs nothing real: what an evaluator would charge)"
    return f"Estimated at the start: {_usd(float(cost_estimate.get('total_usd') or 0.0))} ({stages}){free}"
