"""`python -m engine tune ...` and `bench tuning`: a thin adapter over engine.tuning and engine.bench.tuning.

tune --method grid|bayesian|random --iterations N [--params a,b,c] [--entities N] [--seed S]
     [--validation-data FILE] [--validation-split 0.8] [--rewards k=v,...] [--top-k K]
     [--output-file FILE] [--report-file FILE] [--detach]
tune --config-file FILE --validate [--study ID]
tune status [ID] | list | cancel ID | resume ID | export ID | handoff ID | sensitivity
bench tuning      Bayesian vs random search on the Branin function (evaluations to near-optimum)
bench tuning --workers 1,2   a real-engine study in this process and on local Dask clusters
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from engine.bench.tuning import (
    format_scale_row,
    format_seed,
    format_summary,
    run_scale_bench,
    run_tuning_bench,
    scale_projection,
)
from engine.cli.args import LIMIT, MAX_ENTITIES, ROW_ID, SEED, number, output_path, whole
from engine.cli.common import (
    actor,
    add_evaluator_timeout,
    add_executor_options,
    add_limit_options,
    executor_from_args,
    open_ops,
)
from engine.core.errors import ConfigError
from engine.core.params import PARAMETER_SPECS, ParameterConfig
from engine.core.settings import load_settings
from engine.jobs.executor import check_workers
from engine.jobs.queue import JobStore, worker_liveness
from engine.tuning import (
    DEFAULT_TUNED,
    METHODS,
    EntitySpec,
    Rewards,
    StudySpec,
    cancel_study,
    current_config,
    evidence_ref,
    file_entity_spec,
    get_study,
    handoff,
    labels_ref,
    latest_study,
    list_studies,
    list_trials,
    parse_param_names,
    resume_study,
    start_study,
    study_dir,
    study_state,
    validate_config,
    write_outputs,
)
from engine.tuning.holdout import split_entities
from engine.tuning.objective import catalogue_workload, sensitivity
from engine.tuning.spec import MAX_ENTITIES as MAX_STUDY_ENTITIES
from engine.tuning.spec import MAX_ITERATIONS

#: a study needs a training and a hold-out entity at least
STUDY_ENTITIES = whole(2, MAX_STUDY_ENTITIES)
#: a fraction of the entities, both sides non-empty
SPLIT = number(0, 1, low_open=True, high_open=True)


def _f(x, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


# --------------------------------------------------------------------------- tune (run / validate)


def _spec_from_args(args):
    if args.validation_data:
        entities = file_entity_spec(args.validation_data)
    else:
        entities = EntitySpec(
            kind="catalogue", n=args.entities, catalogue_seed=args.catalogue_seed, offset=args.entity_offset
        )
    return StudySpec(
        method=args.method,
        params=parse_param_names(args.params),
        iterations=args.iterations,
        entities=entities,
        seed=args.seed,
        world_seed=args.world_seed,
        rewards=Rewards.parse(args.rewards) if args.rewards else Rewards(),
        train_fraction=args.validation_split,
        top_k=args.top_k,
        name=args.name or "",
        evidence=evidence_ref(
            args.evidence, replay=args.replay, url=args.evaluator_url, timeout_s=args.evaluator_timeout
        ),
        labels=labels_ref(args.labels) if args.labels else None,
        concurrency=args.concurrency or 1,
        max_hops_per_s=args.max_hops_per_s,
        max_in_flight=args.max_in_flight,
        workers=args.workers or 1,
    )


def _export(ops, settings, study, output_file, report_file) -> None:
    if not study.result:
        raise ConfigError(f"study {study.id} has not finished: nothing to export yet")
    out = study_dir(settings, study)
    if not (out / "best-config.json").exists():
        write_outputs(ops, study, study.result, settings)
    if output_file:
        _copy(out / "best-config.json", output_file, "--output-file")
        print(f"best config written to {output_file}")
    if report_file:
        _copy(out / "report.md", report_file, "--report-file")
        print(f"report written to {report_file}")


def _copy(source: Path, target: str, flag: str) -> None:
    """Copy a study output to the operator's file (its directory was checked while parsing); one line on failure."""
    try:
        shutil.copyfile(source, Path(target).expanduser())
    except OSError as exc:
        raise ConfigError(
            f"cannot write {target} ({exc.strerror or type(exc).__name__}): choose another {flag}"
        ) from None


def _print_summary(study, settings) -> None:
    r = study.result
    base, win = r["base"], r["winner"]
    print(f"study {study.id} finished: {r['trials']} trials ({r['failed']} failed)")
    print(f"  current config (trial 0): training {_f(base['score'])}  hold-out {_f(base['holdout_score'])}")
    print(
        f"  winner (trial {win['trial']}):        training {_f(win['score'])}  hold-out {_f(win['holdout_score'])}  "
        f"optimism gap {_f(win['gap'])}"
    )
    print(
        f"  hold-out improvement: {_f(r['improvement_holdout'])} per entity"
        + ("  (the current config won: nothing to roll out)" if r["winner_is_base"] else "")
    )
    for name, ch in r["changes"].items():
        print(f"    {name}: {ch['from']} -> {ch['to']}")
    out = study_dir(settings, study)
    print(f"  best config: {out / 'best-config.json'}\n  report:      {out / 'report.md'}")


def _follow(ops, settings, study_id: int, job_id: int, poll_s: float = 0.5) -> int:
    store = JobStore(ops)
    last = None
    try:
        while True:
            job = store.get(job_id)
            line = f"[{job.progress_done}/{job.progress_total}] {job.message}" if job.progress_total else str(job.state)
            if line != last:
                print(line, flush=True)
                last = line
            if job.state.is_terminal():
                break
            if job.state.value == "dead" or (job.state.has_worker() and not _alive(job)):
                print(f"the worker died; resume with `python -m engine tune resume {study_id}`", file=sys.stderr)
                return 1
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print(
            f"\nstudy {study_id} continues in its worker; follow it with `python -m engine tune status {study_id}`, "
            f"stop it with `python -m engine tune cancel {study_id}`",
            file=sys.stderr,
        )
        return 130
    if job.error:
        print(f"study {study_id} {job.state}: {job.error}", file=sys.stderr)
        return 1
    study = get_study(ops, study_id)
    _print_summary(study, settings)
    return 0


def _alive(job) -> bool:
    return worker_liveness(job, time.time())[0]


def cmd_tune(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.validate or args.config_file:
        return _validate(args, settings)
    if args.detach and (args.output_file or args.report_file):
        raise ConfigError(
            "--output-file/--report-file need the study to finish: drop --detach, or export later "
            "with `python -m engine tune export ID --output-file FILE`"
        )
    spec = _spec_from_args(args)
    where = executor_from_args(args)
    ops = open_ops(settings)
    study, job, pid = start_study(ops, settings, spec, actor=actor(), scheduler=where.scheduler)
    print(f"study {study.id}: {study.name}")
    print(f"  {study.sampler}")
    print(f"  trials run {where.describe()}")
    if study.grid_full_size is not None:
        print(f"  full grid size: {study.grid_full_size:,} points")
    print(
        f"  {len(study.train_ids)} training / {len(study.holdout_ids)} hold-out entities; "
        f"job {job.id}, worker pid {pid}"
    )
    if args.detach:
        print(f"detached: follow with `python -m engine tune status {study.id}`")
        return 0
    rc = _follow(ops, settings, study.id, job.id)
    if rc == 0:
        _export(ops, settings, get_study(ops, study.id), args.output_file, args.report_file)
    return rc


def _validate(args, settings) -> int:
    if not (args.validate and args.config_file):
        raise ConfigError("validate mode needs both --config-file FILE and --validate")
    config = ParameterConfig.load(args.config_file)
    ops = open_ops(settings)
    study = get_study(ops, args.study) if args.study is not None else None
    if study is None and not (args.validation_data or args.entities_given or args.entity_offset):
        study = latest_study(ops)
    if study is not None:
        v = validate_config(config, study=study)
    else:
        v = validate_config(config, spec=_spec_from_args(args), base=current_config(ops))
    out = {
        "holdout": v.description,
        "candidate": {"config_hash": v.candidate_hash, **v.candidate.components()},
        "base": {"config_hash": v.base_hash, **v.base.components()},
        "difference": v.difference,
    }
    ops.audit(
        actor(),
        "tuning.validate",
        str(Path(args.config_file).resolve()),
        {
            "candidate_hash": v.candidate_hash,
            "score": v.candidate.score,
            "base_score": v.base.score,
            "holdout": v.description,
        },
    )
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"validated {args.config_file} (hash {v.candidate_hash}) on the {v.description}")
    for label, r, h in (("candidate", v.candidate, v.candidate_hash), ("base", v.base, v.base_hash)):
        print(
            f"  {label:<9} {h}  score {_f(r.score)}  precision {_f(r.precision, 3)}  recall {_f(r.recall, 3)}  "
            f"USD/entity {_f(r.cost_per_entity)}  actionable {r.called_actionable} ({r.true_actionable} true)"
        )
    print(f"  difference (candidate - base): {v.difference:+.4f} per entity")
    return 0


# --------------------------------------------------------------------------- sub-commands


def cmd_status(args) -> int:
    settings = load_settings()
    ops = open_ops(settings)
    JobStore(ops).reap()
    study = get_study(ops, args.id) if args.id is not None else latest_study(ops)
    if study is None:
        print("no tuning studies yet: start one with `python -m engine tune --method bayesian --iterations 30`")
        return 0
    trials = list_trials(ops, study.id)
    state = study_state(ops, study)
    job = JobStore(ops).get(study.job_id) if study.job_id else None
    if args.json:
        print(
            json.dumps(
                {
                    "study": study.id,
                    "name": study.name,
                    "state": state,
                    "trials": [t.row_summary() for t in trials],
                    "result": study.result,
                    "job": job.to_dict() if job else None,
                },
                indent=2,
                default=str,
            )
        )
        return 0
    done = [t for t in trials if t.complete]
    # a complete trial always has a score (insert_trial writes it with the result); the filter says so to mypy
    scored = [(t.score, t) for t in done if t.score is not None]
    best = max(scored, key=lambda pair: pair[0])[1] if scored else None
    print(f"study {study.id}: {study.name}  [{state}]")
    print(f"  {study.sampler}")
    print(
        f"  trials {len(trials)}/{study.total_trials} ({len(trials) - len(done)} failed)"
        + (f"; best training score {_f(best.score)} (trial {best.number})" if best else "")
    )
    if job:
        print(
            f"  job {job.id}: {job.state}  {job.progress_done}/{job.progress_total}  {job.message or job.error or ''}"
        )
    if study.result:
        _print_summary(study, settings)
    return 0


def cmd_list(args) -> int:
    ops = open_ops(load_settings())
    studies = list_studies(ops, limit=args.limit)
    if not studies:
        print("no tuning studies yet")
    for s in studies:
        n = len(list_trials(ops, s.id))
        r = s.result
        tail = (
            (
                f"winner trial {r['winner']['trial']} hold-out {_f(r['winner']['holdout_score'])} "
                f"(base {_f(r['base']['holdout_score'])})"
            )
            if r
            else ""
        )
        print(
            f"{s.id:>4}  {study_state(ops, s):<9} {s.spec.method:<8} {n:>4}/{s.total_trials:<4} {s.name}  "
            f"{tail}".rstrip()
        )
    return 0


def cmd_cancel(args) -> int:
    job = cancel_study(open_ops(load_settings()), args.id, actor=actor())
    print(f"study {args.id}: cancel requested (job {job.id} is {job.state}); finished trials are kept")
    return 0


def cmd_resume(args) -> int:
    settings = load_settings()
    job, how = resume_study(open_ops(settings), settings, args.id, actor=actor())
    print(f"study {args.id}: job {job.id} {how}")
    return 0


def cmd_export(args) -> int:
    settings = load_settings()
    ops = open_ops(settings)
    if not (args.output_file or args.report_file):
        raise ConfigError("give --output-file FILE and/or --report-file FILE")
    _export(ops, settings, get_study(ops, args.id), args.output_file, args.report_file)
    return 0


def cmd_handoff(args) -> int:
    settings = load_settings()
    path = handoff(open_ops(settings), settings, args.id, actor=actor(), name=args.name)
    print(f"study {args.id}: winner written to {path} and set as the rollout candidate")
    return 0


def cmd_sensitivity(args) -> int:
    names = parse_param_names(args.params) if args.params else tuple(s.name for s in PARAMETER_SPECS)
    workload = catalogue_workload(args.entities, args.catalogue_seed, args.world_seed)
    train = split_entities(workload.entity_ids, args.validation_split, f"holdout-{args.seed}").train
    rewards = Rewards.parse(args.rewards) if args.rewards else Rewards()
    print(
        f"one-at-a-time sweep of {len(names)} parameter(s), {args.points} values each, over "
        f"{len(train)} training entities ({workload.description})",
        flush=True,
    )
    rows = sensitivity(
        workload,
        train,
        names,
        rewards=rewards,
        points=args.points,
        progress=lambda i, n, name: print(f"  [{i}/{n}] {name}", file=sys.stderr, flush=True),
    )
    print(f"base score {_f(rows[0].base_score)}\n{'parameter':<28} {'spread':>8}  best value (score)   sweep")
    for r in rows:
        v, s = r.best
        sweep = ", ".join(f"{x}:{_f(y, 3)}" for x, y in zip(r.values, r.scores))
        print(f"{r.name:<28} {r.spread:>8.4f}  {v} ({s:.4f})   {sweep}")
    return 0


# --------------------------------------------------------------------------- bench


def _worker_counts(text: str) -> list[int]:
    """``--workers 1,2``: distinct worker counts, each 1..MAX_WORKERS (one-line ConfigError)."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            n = int(part)
        except ValueError:
            raise ConfigError(f"--workers {text!r}: {part!r} is not a whole number (e.g. --workers 1,2)") from None
        check_workers(n)
        if n not in out:
            out.append(n)
    if not out:
        raise ConfigError("--workers needs at least one worker count (e.g. --workers 1,2)")
    return out


def cmd_bench_tuning(args) -> int:
    """Bayesian vs random search on Branin: evaluations until within ``--tolerance`` of the optimum; with
    ``--workers``: a real-engine study in this process and on local Dask clusters of each worker count."""
    if args.workers:
        counts = _worker_counts(args.workers)
        print(
            f"real-engine {args.method} study: {args.entities:,} catalogue entities, trial 0 + {args.iterations} "
            f"trials + hold-out re-scoring; in this process, then Dask with {', '.join(map(str, counts))} worker(s)",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
            rows: list = []

            def show(row) -> None:
                rows.append(row)
                print(format_scale_row(row, rows[0]), flush=True)

            best = run_scale_bench(
                Path(tmp),
                counts,
                method=args.method,
                entities=args.entities,
                iterations=args.iterations,
                seed=args.seed,
                rounds=args.rounds,
                on_row=show,
            )
        if args.rounds > 1:
            print(f"fastest of {args.rounds} rounds per setting:")
            for row in best:
                print(format_scale_row(row, best[0]))
        for line in scale_projection(best):
            print(line)
        return 0
    rows = run_tuning_bench(
        args.seeds,
        budget=args.budget,
        random_budget=args.random_budget,
        tolerance=args.tolerance,
        on_seed=lambda row: print(format_seed(row, budget=args.budget, random_budget=args.random_budget), flush=True),
    )
    print(format_summary(rows, budget=args.budget, random_budget=args.random_budget, tolerance=args.tolerance))
    return 0


# --------------------------------------------------------------------------- wiring


def _add_entity_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalogue-seed", type=SEED, default=7, help="catalogue generator seed (default 7)")
    p.add_argument("--world-seed", type=SEED, default=11, help="simulated world seed (default 11)")
    p.add_argument("--seed", type=SEED, default=0, help="sampler seed; also fixes the hold-out salt (default 0)")
    p.add_argument(
        "--validation-split",
        type=SPLIT,
        default=0.8,
        help="fraction of entities used for training; the rest is the hold-out set (default 0.8)",
    )
    p.add_argument(
        "--rewards", help="e.g. true_actionable=10,false_actionable=5,per_usd=1 (engine/tuning/objective.py)"
    )


class _EntitiesAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.entities_given = True


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="tune the discovery parameters (grid, random, Bayesian) with hold-out validation",
        description=(
            "Create a tuning study and run it in a worker process: trial 0 is the current config, "
            "each trial runs the new system in shadow over the training entities against the simulated world; "
            "the best trials are re-scored on the hold-out set. Default tuned parameters: " + ", ".join(DEFAULT_TUNED)
        ),
    )
    p.add_argument("--method", choices=METHODS, default="bayesian")
    p.add_argument(
        "--iterations",
        type=whole(1, MAX_ITERATIONS),
        default=30,
        help=f"search trials besides trial 0, 1 to {MAX_ITERATIONS:,} (default 30)",
    )
    p.add_argument("--params", help="comma-separated parameter names to tune (default: the documented subset)")
    p.add_argument(
        "--entities",
        type=STUDY_ENTITIES,
        default=200,
        action=_EntitiesAction,
        help="generated catalogue entities, training + hold-out (default 200)",
    )
    p.add_argument(
        "--entity-offset",
        type=whole(0, MAX_ENTITIES),
        default=0,
        help="skip this many catalogue entities first (e.g. validate on entities no study used)",
    )
    p.add_argument(
        "--validation-data",
        metavar="FILE",
        help="tune on the entities of this CSV/JSON file (import format) instead of the catalogue",
    )
    p.add_argument(
        "--evidence",
        choices=("world", "replay", "http"),
        default="world",
        help="what trials run against: the simulated world (default), a replay file or your HTTP "
        "evaluator; replay and http need --labels",
    )
    p.add_argument("--replay", metavar="FILE", help="with --evidence replay: recorded evidence (JSONL)")
    add_limit_options(p, concurrency_default="1; use 16-64 against an HTTP evaluator")
    add_executor_options(p, units="trials")
    p.add_argument("--evaluator-url", metavar="URL", help="with --evidence http: your evaluator service")
    add_evaluator_timeout(p, when="with --evidence http: ")
    p.add_argument(
        "--labels",
        metavar="FILE",
        help="known outcomes (CSV entity_id,actionable or JSON) to score trials by instead of the "
        "simulated world's truth",
    )
    p.add_argument(
        "--top-k", type=whole(1, 1000), default=3, help="best training trials re-scored on the hold-out set (default 3)"
    )
    p.add_argument("--name", help="a label for the study")
    p.add_argument(
        "--output-file",
        metavar="FILE",
        type=output_path("--output-file"),
        help="write the best config JSON here when the study finishes",
    )
    p.add_argument(
        "--report-file",
        metavar="FILE",
        type=output_path("--report-file"),
        help="write the Markdown report here when the study finishes",
    )
    p.add_argument("--detach", action="store_true", help="start the worker and return at once")
    p.add_argument("--config-file", metavar="FILE", help="with --validate: the config to score on the hold-out set")
    p.add_argument(
        "--validate",
        action="store_true",
        help="score --config-file (and the base config) on a hold-out set: --study ID's, else the "
        "latest study's, else the one the entity flags define",
    )
    p.add_argument("--study", type=ROW_ID, help="with --validate: whose hold-out set")
    p.add_argument("--json", action="store_true", help="with --validate: print JSON")
    _add_entity_flags(p)
    p.set_defaults(func=cmd_tune, entities_given=False)

    tsub = p.add_subparsers(dest="tune_command", metavar="SUBCOMMAND")
    s = tsub.add_parser("status", help="a study's state, progress, best trial and result (default: the latest)")
    s.add_argument("id", type=ROW_ID, nargs="?")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    s = tsub.add_parser("list", help="tuning studies, newest first")
    s.add_argument("--limit", type=LIMIT, default=20)
    s.set_defaults(func=cmd_list)
    s = tsub.add_parser("cancel", help="stop a running study at its next checkpoint (finished trials are kept)")
    s.add_argument("id", type=ROW_ID)
    s.set_defaults(func=cmd_cancel)
    s = tsub.add_parser("resume", help="continue a dead, failed or cancelled study from its finished trials")
    s.add_argument("id", type=ROW_ID)
    s.set_defaults(func=cmd_resume)
    s = tsub.add_parser("export", help="write a finished study's best config and/or report")
    s.add_argument("id", type=ROW_ID)
    s.add_argument("--output-file", metavar="FILE", type=output_path("--output-file"))
    s.add_argument("--report-file", metavar="FILE", type=output_path("--report-file"))
    s.set_defaults(func=cmd_export)
    s = tsub.add_parser("handoff", help="make a finished study's winner the candidate config of the next rollout")
    s.add_argument("id", type=ROW_ID)
    s.add_argument("--name", help="config name under <data_dir>/configs/ (default tuning-study-ID-HASH)")
    s.set_defaults(func=cmd_handoff)
    s = tsub.add_parser("sensitivity", help="one-at-a-time sweep: how much each parameter alone moves the objective")
    s.add_argument("--params", help="comma-separated names (default: all 39)")
    s.add_argument("--entities", type=STUDY_ENTITIES, default=250)
    s.add_argument("--points", type=whole(1, 100), default=4, help="values per parameter across its bounds (default 4)")
    _add_entity_flags(s)
    s.set_defaults(func=cmd_sensitivity)


def register_bench(bench) -> None:
    p = bench.add_parser("tuning", help="Bayesian vs random search on Branin: evaluations to near the optimum")
    p.add_argument("--seeds", type=whole(1, 1000), default=3)
    p.add_argument("--budget", type=whole(1, 10_000), default=40, help="Bayesian evaluations at most (default 40)")
    p.add_argument(
        "--random-budget", type=whole(1, 1_000_000), default=1000, help="random evaluations at most (default 1000)"
    )
    p.add_argument(
        "--tolerance",
        type=number(0, 1_000_000, low_open=True),
        default=0.1,
        help="distance to the optimum 0.397887 that counts",
    )
    p.add_argument(
        "--workers",
        metavar="N,N",
        help="instead of Branin: a real-engine study in this process and on a local Dask cluster of each worker "
        "count (e.g. 1,2): wall time, ratios, best trial, overhead and a throughput projection",
    )
    p.add_argument("--method", choices=METHODS, default="random", help="with --workers: the study's method")
    p.add_argument(
        "--entities", type=STUDY_ENTITIES, default=1000, help="with --workers: catalogue entities (default 1000)"
    )
    p.add_argument(
        "--iterations", type=whole(1, 1000), default=24, help="with --workers: trials besides trial 0 (default 24)"
    )
    p.add_argument("--seed", type=SEED, default=0, help="with --workers: the study's seed (default 0)")
    p.add_argument(
        "--rounds",
        type=whole(1, 20),
        default=1,
        help="with --workers: run the settings in turn R times, keep each one's fastest (a shared machine; default 1)",
    )
    p.set_defaults(func=cmd_bench_tuning)
