"""What a finished tuning study gives: its winner, its report, its files and the handoff to rollout.

**The winner** (``summarize``). After the search, trial 0 and the ``top_k``
best search trials by training score are re-scored on the hold-out entities.
The winner is, among trial 0 and the re-scored trials whose training score
beats trial 0's, the one with the best hold-out score (ties go to the lower
trial number, so the base config wins a tie). A trial must therefore beat the
current config on training *and* hold up on entities it was not tuned on; a
trial that is poor on training cannot win on hold-out noise. Because trial 0
is always eligible, the winner's hold-out score is never below the base
config's; the price is a small selection effect on the hold-out set (one pick
among at most ``top_k + 1``), which is why the **optimism gap** (training
minus hold-out score of the winner) is reported next to it.

**Files** (``<data_dir>/tuning/study-<id>/``): ``best-config.json`` and
``report.md`` (``write_outputs``). ``handoff`` copies the winner to
``<data_dir>/configs/<name>.json`` and makes it the rollout candidate
(``engine.core.configs.set_candidate``), audited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.core.access import Actor
from engine.core.configs import config_diff, live_config, set_candidate
from engine.core.errors import ConfigError
from engine.core.params import ParameterConfig
from engine.monitoring.events import query_events
from engine.monitoring.reports import md_cell
from engine.store.access import authorize
from engine.tuning.analysis import Interval, holdout_interval, scores_from_events
from engine.tuning.store import Study, Trial, get_study, list_trials


def summarize(study: Study, trials: Sequence[Trial], *, grid_exhausted: bool = False) -> dict:
    """The study's outcome, from its trials (pure)."""
    complete = [t for t in trials if t.complete]
    base = next(t for t in trials if t.number == 0)
    rescored = [t for t in complete if t.holdout_score is not None]
    # eligible: the base, and re-scored trials that beat it on training; of those the best hold-out wins
    eligible = [t for t in rescored if t.number == 0 or t.training_score > base.training_score]
    winner = sorted(eligible, key=lambda t: (-t.rescored_holdout_score, t.number))[0]
    best_train = sorted(complete, key=lambda t: (-t.training_score, t.number))[0]

    def brief(t: Trial) -> dict:
        return {
            "trial": t.number,
            "score": t.score,
            "holdout_score": t.holdout_score,
            "gap": t.gap,
            "config_hash": t.config_hash,
            "point": t.point,
        }

    changes = {
        name: {"from": getattr(study.base_config, name), "to": getattr(winner.config, name)}
        for name in study.spec.params
        if getattr(study.base_config, name) != getattr(winner.config, name)
    }
    return {
        "study": study.id,
        "trials": len(trials),
        "failed": sum(1 for t in trials if not t.complete),
        "grid_exhausted": grid_exhausted,
        "base": brief(base),
        "best_training": brief(best_train),
        "winner": brief(winner),
        "winner_is_base": winner.number == 0,
        "improvement_holdout": winner.rescored_holdout_score - base.rescored_holdout_score,
        "rescored": [brief(t) for t in sorted(rescored, key=lambda t: t.number)],
        "changes": changes,
        "winner_config": winner.trial_config.to_dict(),
    }


def study_dir(settings, study: Study) -> Path:
    """Where the study's files go: ``<data_dir>/tuning/study-<id>/``."""
    return Path(settings.data_dir) / "tuning" / study.out_dir_name


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _interval_note(trials: Sequence[Trial], summary: Mapping[str, Any], seed: int) -> str:
    """ " (95% interval a to b, paired bootstrap over n hold-out entities)." plus the small-sample warning; just
    "." when the per-entity hold-out scores were not kept."""
    by_number = {t.number: t for t in trials}
    base, win = by_number.get(0), by_number.get(summary["winner"]["trial"])
    if not (base and win and base.holdout_entity_scores and win.holdout_entity_scores):
        return "."
    iv = holdout_interval(base.holdout_entity_scores, win.holdout_entity_scores, seed=seed)
    if iv is None:
        return "."
    note = (
        f" ({iv.confidence:.0%} interval {iv.low:+.4f} to {iv.high:+.4f}, paired bootstrap over {iv.n} hold-out "
        "entities)."
    )
    if iv.small_sample:
        note += f" Only {iv.n} hold-out entities: the interval is wide; re-score on more before trusting it."
    return note


def render_report(study: Study, trials: Sequence[Trial], summary: Mapping[str, Any]) -> str:
    """The study as Markdown (pure)."""
    spec = study.spec
    rw = spec.rewards
    base, winner = summary["base"], summary["winner"]
    lines = [
        f"# Tuning study {study.id}: {md_cell(study.name)}",  # a name typed by a person: text, not markup
        "",
        f"- Method: {study.sampler}",
        f"- Search trials: {spec.iterations} "
        f"(plus trial 0 = the config current at creation, hash {study.base_config.hash()})",
        f"- Tuned parameters: {', '.join(spec.params)}",
        f"- Entities: {spec.entities.describe()}; evidence: {spec.evidence.describe(spec.world_seed)}"
        + (f"; truth from {md_cell(str(spec.labels.path))}" if spec.labels else "; truth: the simulated world's"),
        f"- Split: {len(study.train_ids)} training / {len(study.holdout_ids)} hold-out "
        f"(hash split, training fraction {spec.train_fraction}, salt {spec.salt!r})",
        f"- Sampler seed: {spec.seed}",
        f"- Rewards per entity: +{rw.true_actionable:g} per true actionable call, "
        f"−{rw.false_actionable:g} per false one, "
        f"−{rw.missed_actionable:g} per missed one, −{rw.per_usd:g} per USD spent, −{rw.per_error:g} per errored hop",
        f"- Trials finished: {summary['trials']} ({summary['failed']} failed)",
        "",
        "## Result",
        "",
        "| | trial | training score | hold-out score | gap (training − hold-out) | config hash |",
        "|---|---:|---:|---:|---:|---|",
        f"| current config | 0 | {_fmt(base['score'])} | {_fmt(base['holdout_score'])} | {_fmt(base['gap'])} "
        f"| {base['config_hash']} |",
        f"| **winner** | {winner['trial']} | {_fmt(winner['score'])} | {_fmt(winner['holdout_score'])} "
        f"| {_fmt(winner['gap'])} | {winner['config_hash']} |",
        "",
        f"Hold-out improvement over the current config: {_fmt(summary['improvement_holdout'])} per entity"
        + _interval_note(trials, summary, study.spec.seed),
        f"Optimism gap of the winner (training − hold-out): {_fmt(winner['gap'])} per entity.",
        "",
        (
            "The current config won on the hold-out set: no tuned trial held up better, "
            "so nothing should be rolled out."
            if summary["winner_is_base"]
            else "The winner is, among trial 0 and the re-scored trials that beat it on training, "
            "the one with the best hold-out score; trial 0 is always a candidate, "
            "so the winner never scores below the current config on "
            f"the hold-out set (a pick among at most {len(summary['rescored'])} re-scored trials, hence the gap is "
            "worth reading)."
        ),
        "",
        "## Parameter changes of the winner",
        "",
    ]
    if summary["changes"]:
        lines += ["| parameter | current | winner |", "|---|---:|---:|"]
        lines += [f"| {k} | {v['from']} | {v['to']} |" for k, v in summary["changes"].items()]
    else:
        lines.append("No parameter changes: the winner is the current config.")
    lines += [
        "",
        "## Hold-out re-scoring",
        "",
        "| trial | training | hold-out | gap | precision (hold-out) | recall (hold-out) | USD / entity (hold-out) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in trials:
        if t.holdout_result is None:
            continue
        h = t.holdout_result
        lines.append(
            f"| {t.number} | {_fmt(t.score)} | {_fmt(t.holdout_score)} | {_fmt(t.gap)} | "
            f"{_fmt(h.precision, 3)} | {_fmt(h.recall, 3)} | {_fmt(h.cost_per_entity, 4)} |"
        )
    lines += [
        "",
        "## Trials (best 15 by training score)",
        "",
        "| trial | state | training score | precision | recall | USD / entity | " + " | ".join(spec.params) + " |",
        "|---:|---|---:|---:|---:|---:|" + "---:|" * len(spec.params),
    ]
    ranked = sorted(trials, key=lambda t: (t.score is None, -(t.score or 0.0), t.number))[:15]
    for t in ranked:
        r = t.result
        vals = " | ".join(_fmt(t.point.get(p)) for p in spec.params)
        lines.append(
            f"| {t.number} | {t.state} | {_fmt(t.score)} | {_fmt(r.precision if r else None, 3)} | "
            f"{_fmt(r.recall if r else None, 3)} | {_fmt(r.cost_per_entity if r else None)} | {vals} |"
        )
    failed = [t for t in trials if not t.complete]
    if failed:
        lines += ["", "## Failed trials", ""] + [f"- trial {t.number}: {t.error}" for t in failed]
    lines += [
        "",
        "## How the score is computed",
        "",
        "Each trial runs the new discovery system in shadow over every training entity with fresh "
        "hypotheses, against the simulated world, and scores the runs against the world's ground truth "
        "(engine/tuning/objective.py): score per entity = (rewards for true actionable calls − penalties for "
        "false and missed ones − dollars spent × per_usd − errored hops × per_error) / entities.",
        "",
    ]
    return "\n".join(lines)


def write_outputs(ops, study: Study, summary: Mapping[str, Any], settings) -> dict[str, Path]:
    """best-config.json and report.md under <data_dir>/tuning/study-<id>/ (when settings are given)."""
    if settings is None:
        return {}
    out = study_dir(settings, study)
    out.mkdir(parents=True, exist_ok=True)
    cfg = ParameterConfig.from_dict(summary["winner_config"])
    paths = {"config": cfg.save(out / "best-config.json"), "report": out / "report.md"}
    paths["report"].write_text(render_report(study, list_trials(ops, study.id), summary), encoding="utf-8")
    return paths


def _finished_result(study: Study) -> dict[str, Any]:
    """The finished study's result (its summary; ConfigError while it has not finished)."""
    if not study.result:
        raise ConfigError(
            f"study {study.id} has not finished: no best config yet (see `python -m engine tune status {study.id}`)"
        )
    return study.result


def winner_config(study: Study) -> ParameterConfig:
    """The finished study's winning config (ConfigError while it has not finished)."""
    return ParameterConfig.from_dict(_finished_result(study)["winner_config"], source=f"study {study.id} winner")


def handoff(ops, settings, study_id: int, *, actor: Actor, name: str | None = None) -> Path:
    """Write the winner to <data_dir>/configs/<name>.json and make it the rollout candidate (approver; audited).

    Refused (ConfigError, nothing written) when the winner is the live config: a rollout of it would
    compare the live config with itself."""
    who = authorize(ops, actor, "tuning.handoff")
    study = get_study(ops, study_id)
    cfg = winner_config(study)
    if not config_diff(live_config(ops), cfg):
        raise ConfigError(
            f"study {study.id}'s winner (config {cfg.hash()}) is identical to the live config: nothing to hand over"
        )
    name = name or f"tuning-study-{study.id}-{cfg.hash()}"
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"config name {name!r}: use letters, digits, '-' and '_' only")
    path = cfg.save(Path(settings.data_dir) / "configs" / f"{name}.json")
    source = f"tuning study {study.id} (trial {_finished_result(study)['winner']['trial']})"
    set_candidate(ops, path, who, source=source)
    ops.audit(who, "tuning.handoff", f"study:{study.id}", {"path": str(path), "config_hash": cfg.hash()})
    return path


def holdout_entity_scores(ops, study: Study, trial: Trial) -> dict[str, float] | None:
    """Each hold-out entity's own score of a re-scored trial: as kept at re-scoring, else rebuilt from the
    metric events its hold-out run recorded (a study re-scored before they were kept); None when neither."""
    if trial.holdout_score is None:
        return None
    if trial.holdout_entity_scores:
        return dict(trial.holdout_entity_scores)
    events = query_events(ops, run_id=f"tuning-{study.id}-t{trial.number}-holdout", experiments=True)
    return scores_from_events(events, study.spec.rewards) or None


def holdout_improvement(ops, study: Study, trials: Sequence[Trial]) -> Interval | None:
    """The winner's hold-out improvement over the current config with its paired bootstrap interval (seeded by
    the study's seed); None before the study finished or without per-entity hold-out scores."""
    if not study.result:
        return None
    by_number = {t.number: t for t in trials}
    base, win = by_number.get(0), by_number.get(study.result["winner"]["trial"])
    if base is None or win is None:
        return None
    a, b = holdout_entity_scores(ops, study, base), holdout_entity_scores(ops, study, win)
    if not a or not b:
        return None
    return holdout_interval(a, b, seed=study.spec.seed)
