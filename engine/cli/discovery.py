"""`python -m engine discover | compare` and `bench discovery`: the discovery engine from the command line.

A thin adapter over engine.discovery.runs (graph entities), engine.discovery.systems (in-memory
catalogue runs), engine.discovery.scoring and engine.bench.discovery. Every run on graph entities goes through
engine.discovery.runs.run_entities, so it is recorded as a metric event.

Configs: ``--config-file FILE`` is the new system's ParameterConfig; without it
the new system uses the rollout candidate if one was handed over, else the
live config; the old system always uses the live config (engine.core.configs).

Evidence: the simulated world by default (``--seed``/``--world-seed``), or
``--evaluator-url URL`` (your HTTP evaluator) or ``--replay FILE.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.bench.discovery import bench_discovery
from engine.catalogue.generator import generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.cli.args import ENTITIES, SEED, number
from engine.cli.common import (
    actor,
    add_evaluator_timeout,
    add_executor_options,
    add_limit_options,
    executor_from_args,
    open_ops,
    source_limits,
    stores,
)
from engine.core.configs import config_for_system
from engine.core.errors import ConfigError
from engine.core.model import RunResult
from engine.core.params import ParameterConfig
from engine.core.settings import load_settings
from engine.discovery import runs
from engine.discovery.evidence import DEFAULT_HOP_COST_CEILING_USD
from engine.discovery.limits import limit_source
from engine.discovery.runs import EvidenceSpec, make_source, truth_of
from engine.discovery.scoring import comparison_rows, score_runs
from engine.discovery.systems import run_batch
from engine.jobs.executor import make_executor
from engine.store.access import authorize

DEFAULT_WORLD_SEED = 1
DEFAULT_SAMPLE_SEED = 7
VIRTUAL_NOW = 1_700_000_000.0  # the frozen clock of in-memory catalogue runs
#: the highest per-hop cost ceiling the flag takes (the source refuses one below its own quote)
MAX_HOP_COST_USD = 1000.0


# --------------------------------------------------------------------------- registration


def _source_options(p: argparse.ArgumentParser, seed_flags: Sequence[str]) -> None:
    p.add_argument(
        *seed_flags,
        dest="world_seed",
        type=SEED,
        default=DEFAULT_WORLD_SEED,
        metavar="W",
        help=f"simulated world seed (default {DEFAULT_WORLD_SEED})",
    )
    p.add_argument(
        "--evaluator-url",
        default=None,
        metavar="URL",
        help="use your HTTP evaluator instead of the simulated world (see README, evidence contract)",
    )
    add_evaluator_timeout(p)
    p.add_argument(
        "--max-hop-cost",
        type=number(0.0, MAX_HOP_COST_USD, low_open=True),
        default=DEFAULT_HOP_COST_CEILING_USD,
        metavar="USD",
        help="the most one hop may cost: an evaluator answer above it is a bad_response booked at the hop's quote; "
        f"a replay file with such a cost is refused (default {DEFAULT_HOP_COST_CEILING_USD:.2f})",
    )
    p.add_argument(
        "--replay",
        type=Path,
        default=None,
        metavar="FILE",
        help="answer hops from recorded evidence (JSONL) instead of the simulated world",
    )
    p.add_argument(
        "--sleep",
        action="store_true",
        help="simulated world: sleep each hop's latency for real (default: virtual time)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "discover",
        help="run the new or old system on one entity of the graph and print the hop-by-hop trail",
        description=(
            "Runs one system on one entity of the graph (data dir from DISCOVERY_DATA_DIR) and prints each hop: "
            "hypothesis, EIG, hop type, depth, decision, confidence change and cost, then the result. "
            "Live by default (hypotheses and evidence trail written to the graph); --shadow writes nothing. "
            "The run is recorded as a metric event either way."
        ),
    )
    p.add_argument("--entity", required=True, metavar="ID", help="entity id (see `stats` or the Hypotheses page)")
    p.add_argument("--system", choices=("new", "old"), default="new", help="which system (default new)")
    p.add_argument("--shadow", action="store_true", help="compute without writing the graph")
    p.add_argument(
        "--config-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="ParameterConfig JSON (default: live config; the new system uses the candidate if set)",
    )
    _source_options(p, ("--seed", "--world-seed"))
    p.add_argument("--json", action="store_true", help="print the run result as JSON")
    p.set_defaults(func=cmd_discover)

    p = subparsers.add_parser(
        "compare",
        help="run both systems (shadow) on the same entities and print a side-by-side table",
        description=(
            "Runs the new and the old system in shadow (nothing written to the graph) on the same N entities "
            "and prints cost, actionable count and rate, precision and recall against the simulated world's "
            "truth, error rate, latency percentiles and iterations side by side. By default the entities are a "
            "sample (seeded by --seed) of the graph's entities and every run is recorded as a metric event. "
            "--catalogue instead runs N generated catalogue entities (catalogue seed --seed) with fresh "
            "hypotheses in memory: no store is opened and nothing is recorded."
        ),
    )
    p.add_argument("--entities", type=ENTITIES, default=100, metavar="N", help="how many entities (default 100)")
    p.add_argument(
        "--seed",
        type=SEED,
        default=DEFAULT_SAMPLE_SEED,
        metavar="S",
        help=f"sample seed (graph) or catalogue seed (--catalogue) (default {DEFAULT_SAMPLE_SEED})",
    )
    p.add_argument(
        "--catalogue", action="store_true", help="use N generated catalogue entities in memory instead of the graph"
    )
    p.add_argument(
        "--config-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="the new system's ParameterConfig JSON (default: candidate, else live config)",
    )
    p.add_argument(
        "--old-config-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="the old system's ParameterConfig JSON (default: live config)",
    )
    _source_options(p, ("--world-seed",))
    add_limit_options(p, concurrency_default="1; use 16-64 against an HTTP evaluator")
    add_executor_options(p, units="entity runs")
    p.add_argument("--json", action="store_true", help="print both scorecards as JSON")
    p.set_defaults(func=cmd_compare)


def register_bench(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser(
        "discovery",
        help="engine time per entity (evidence latency excluded) p50/p95 and a full new-system run in virtual time",
        description=(
            "Runs the new system on N generated catalogue entities (default 3,400) against the simulated world "
            "in virtual time, in memory (no store, nothing recorded; your data dir is not touched). Prints the "
            "engine's own time per entity (evidence calls excluded) p50/p95/max, the wall time of the whole "
            "run, and the evidence latency the same run would take for real. Then the same for the old system."
        ),
    )
    p.add_argument("--entities", type=ENTITIES, default=3400, metavar="N", help="how many entities (default 3400)")
    p.add_argument("--seed", type=SEED, default=DEFAULT_SAMPLE_SEED, metavar="S", help="catalogue seed (default 7)")
    p.add_argument("--world-seed", type=SEED, default=DEFAULT_WORLD_SEED, metavar="W", help="world seed (default 1)")
    p.add_argument("--config-file", type=Path, default=None, metavar="FILE", help="ParameterConfig JSON")
    p.set_defaults(func=cmd_bench_discovery)


# --------------------------------------------------------------------------- helpers


def _params_for(system: str, config_file: Path | None, ops) -> tuple[ParameterConfig, str]:
    resolved = config_for_system(system, ops, config_file)
    return resolved.config, resolved.label


def _spec(args: argparse.Namespace):
    if args.evaluator_url and args.replay:
        raise ConfigError("choose one evidence source: --evaluator-url or --replay, not both")
    if args.evaluator_url:
        return EvidenceSpec(
            kind="http",
            url=args.evaluator_url,
            timeout_s=args.evaluator_timeout,
            hop_cost_ceiling_usd=args.max_hop_cost,
        )
    if args.replay:
        return EvidenceSpec(kind="replay", replay_path=args.replay, hop_cost_ceiling_usd=args.max_hop_cost)
    return EvidenceSpec(kind="world", world_seed=args.world_seed, sleep=args.sleep)


def _fmt_usd(v: float) -> str:
    return f"${v:.3f}"


def format_trail(result: RunResult) -> list[str]:
    """The hop-by-hop table of one run."""
    header = ("#", "hypothesis", "EIG", "hop", "depth", "decision", "Δconf", "conf", "cost", "latency", "error")
    rows = [header]
    for h in result.hops:
        rows.append(
            (
                str(h.iteration),
                h.pattern[:40],
                f"{h.eig:.3f}",
                h.hop_type.value,
                h.depth.name,
                h.decision.value,
                f"{h.delta:+.2f}",
                f"{h.confidence_after:.2f}",
                _fmt_usd(h.cost_usd),
                f"{h.latency_s:.1f}s",
                h.error or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {0, 2, 6, 7, 8, 9}
    out = []
    for r in rows:
        out.append(
            "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        )
    return out


def _table(rows: list[dict[str, str]], columns: Sequence[str]) -> list[str]:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) if i == 0 else c.rjust(widths[c]) for i, c in enumerate(columns))]
    lines.append("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        lines.append(
            "  ".join(r[c].ljust(widths[c]) if i == 0 else r[c].rjust(widths[c]) for i, c in enumerate(columns))
        )
    return lines


def _json_default(value: Any) -> Any:
    if hasattr(value, "value"):
        return value.value
    return str(value)


# --------------------------------------------------------------------------- discover


def cmd_discover(args: argparse.Namespace) -> int:
    settings = load_settings().ensure_dirs()
    spec = _spec(args)
    with stores(settings) as (graph, ops):
        who = authorize(ops, actor(ops), "discovery.run")  # a shadow run records metric events too
        params, params_label = _params_for(args.system, args.config_file, ops)
        ctx = runs.load_context(graph, args.entity)  # unknown id: one line, nothing run or written
        source = runs.make_source(spec, templates={ctx.template.id: ctx.template}, entities=[ctx.entity])
        run_id = runs.new_run_id(args.system, args.shadow)
        (result,) = runs.run_entities(
            graph,
            ops,
            [args.entity],
            system=args.system,
            params=params,
            source=source,
            shadow=args.shadow,
            run_id=run_id,
        )
        if not args.shadow and result.iterations:
            ops.audit(
                who,
                "discover",
                args.entity,
                {
                    "run_id": run_id,
                    "system": args.system,
                    "config_hash": params.hash(),
                    "source": spec.describe(),
                    "hops": result.iterations,
                    "cost_usd": result.cost_usd,
                },
            )
        truth = runs.truth_of(source)
        truly = truth(args.entity) if truth else None
    if args.json:
        data = asdict(result)
        data.update(run_id=run_id, source=spec.describe(), config_source=params_label, truly_actionable=truly)
        print(json.dumps(data, indent=2, default=_json_default))
        return 0
    e = ctx.entity
    mode = "shadow (nothing written)" if args.shadow else "live (hypotheses and evidence written to the graph)"
    print(
        f"entity   {e.id}  ({e.name}; template {e.template_id}; cluster {e.cluster}"
        f"{f' of {ctx.cluster_size}' if ctx.cluster_size else ''})"
    )
    print(f"system   {args.system} · {mode} · run {run_id}")
    print(
        f"config   {params.hash()} ({params_label}) · budget ${params.cost_cap_usd:.3f} "
        f"(max ${params.max_cost_usd:.2f} less {params.cost_safety_margin:.0%})"
    )
    print(f"evidence {spec.describe()}")
    print()
    if result.hops:
        print("\n".join(format_trail(result)))
    else:
        print("(no hop made)")
    print()
    errors = Counter(result.errors)
    print(
        f"result   {result.iterations} hops · ${result.cost_usd:.3f} spent · actionable: "
        f"{'YES' if result.actionable else 'no'}"
        + ("" if truly is None else f" (truly actionable in the simulated world: {'yes' if truly else 'no'})")
    )
    print(f"stop     {result.stop_reason}")
    print(
        f"errors   {sum(errors.values())}"
        + (f" ({', '.join(f'{k} {v}' for k, v in errors.most_common())})" if errors else "")
    )
    print(
        f"latency  evidence {result.evidence_latency_s:.1f}s ({'slept' if spec.sleep else 'virtual'}) · "
        f"engine {result.engine_time_s * 1000:.2f} ms"
    )
    print()
    print("hypotheses after the run (tested ones marked *):")
    tested = {h.hypothesis_id for h in result.hops}
    for o in sorted(result.outcomes, key=lambda o: -o.confidence):
        print(
            f"  {'*' if o.id in tested else ' '} {o.pattern[:44]:<44} {o.category[:24]:<24} "
            f"{o.status.value:<10} {o.confidence:.2f}  accepts {o.accepts}"
        )
    return 0


# --------------------------------------------------------------------------- compare


def _catalogue_runs(n: int, seed: int, spec, params_new, params_old, concurrency: int = 1, limits=None):
    entities = generate_catalogue(n, seed)
    templates = templates_for(entities, load_templates())
    source = make_source(spec, templates=templates, entities=entities)
    if limits is not None:
        source = limit_source(source, limits)
    new = run_batch(entities, templates, source, params_new, "new", now=VIRTUAL_NOW, concurrency=concurrency)
    old = run_batch(entities, templates, source, params_old, "old", now=VIRTUAL_NOW, concurrency=concurrency)
    return new, old, truth_of(source), f"{n:,} generated catalogue entities (seed {seed}), fresh hypotheses, in memory"


def _graph_runs(args, spec, settings):
    with stores(settings) as (graph, ops):
        params_new, label_new = _params_for("new", args.config_file, ops)
        params_old, label_old = (
            (ParameterConfig.load(args.old_config_file), str(args.old_config_file))
            if args.old_config_file
            else _params_for("old", None, ops)
        )
        ids = graph.list_entity_ids()
        if len(ids) < args.entities:
            raise ConfigError(
                f"the graph holds {len(ids):,} entities, fewer than --entities {args.entities:,}: seed more "
                f"(`python -m engine seed --entities {args.entities}`) or use --catalogue"
            )
        chosen = sorted(random.Random(args.seed).sample(ids, args.entities)) if args.entities < len(ids) else ids
        templates = {t.id: t for t in graph.list_templates()}
        source = runs.make_source(spec, templates=templates)
        limits = source_limits(args, args.concurrency or 1)
        if limits is not None:
            source = limit_source(source, limits)
        runs_on = executor_from_args(args)
        done = [0]
        total = 2 * len(chosen)

        def progress(_result):
            done[0] += 1
            if sys.stderr.isatty() and (done[0] % 100 == 0 or done[0] == total):
                print(f"\r{done[0]:,}/{total:,} runs", end="" if done[0] < total else "\n", file=sys.stderr)

        with make_executor(runs_on) as executor:
            cmp = runs.compare_entities(
                graph,
                ops,
                chosen,
                params_new=params_new,
                params_old=params_old,
                source=source,
                on_result=progress,
                concurrency=args.concurrency or 1,
                executor=executor,
                evidence=spec,
            )
        where = (
            f"{len(chosen):,} of the graph's {len(ids):,} entities (sample seed {args.seed}), stored state; "
            f"runs recorded as metric events {cmp.run_id}-new / {cmp.run_id}-old"
            + ("" if runs_on.kind == "in-process" else f"; entity runs on a {runs_on.describe()}")
        )
        return cmp.new, cmp.old, runs.truth_of(source), where, (params_new, label_new), (params_old, label_old)


def cmd_compare(args: argparse.Namespace) -> int:
    spec = _spec(args)
    if executor_from_args(args).kind != "in-process":
        if args.catalogue:
            raise ConfigError("--workers/--scheduler run the graph's entities: drop --catalogue, or drop --workers")
        if source_limits(args, args.concurrency or 1) is not None:
            raise ConfigError(
                "--max-hops-per-s/--max-in-flight limit one process's calls: they cannot be combined with "
                "--workers > 1 or --scheduler"
            )
    if args.catalogue:
        params_new = ParameterConfig.load(args.config_file) if args.config_file else ParameterConfig()
        params_old = ParameterConfig.load(args.old_config_file) if args.old_config_file else ParameterConfig()
        labels = (
            str(args.config_file) if args.config_file else "defaults",
            str(args.old_config_file) if args.old_config_file else "defaults",
        )
        t0 = time.perf_counter()
        new, old, truth, where = _catalogue_runs(
            args.entities,
            args.seed,
            spec,
            params_new,
            params_old,
            args.concurrency or 1,
            source_limits(args, args.concurrency or 1),
        )
    else:
        settings = load_settings().ensure_dirs()
        ops = open_ops(settings)
        authorize(ops, actor(ops), "discovery.run")  # the graph's entities run shadow: metric events are recorded
        t0 = time.perf_counter()
        new, old, truth, where, (params_new, l_new), (params_old, l_old) = _graph_runs(args, spec, settings)
        labels = (l_new, l_old)
    wall = time.perf_counter() - t0
    sc_new, sc_old = score_runs(new, truth), score_runs(old, truth)
    truly = sum(1 for r in new if truth and truth(r.entity_id)) if truth else None
    stops = {s: Counter(r.stop_reason.split(":", 1)[0] for r in rs) for s, rs in (("new", new), ("old", old))}
    paired = _paired(new, old, truth)
    if args.json:
        print(
            json.dumps(
                {
                    "entities": where,
                    "evidence": spec.describe(),
                    "truly_actionable": truly,
                    "config": {
                        "new": {"hash": params_new.hash(), "from": labels[0]},
                        "old": {"hash": params_old.hash(), "from": labels[1]},
                    },
                    "new": sc_new.to_dict(),
                    "old": sc_old.to_dict(),
                    "stop_reasons": stops,
                    "paired": paired,
                    "seconds": wall,
                },
                indent=2,
                default=_json_default,
            )
        )
        return 0
    print(f"entities  {where}")
    print(
        f"evidence  {spec.describe()}"
        + (f" · truly actionable: {truly:,} of {len(new):,} ({truly / len(new):.1%})" if truly is not None else "")
    )
    print(f"config    new {params_new.hash()} ({labels[0]}) · old {params_old.hash()} ({labels[1]})")
    print()
    print("\n".join(_table(comparison_rows(sc_old, sc_new), ("metric", "old", "new", "change"))))
    print()
    for s in ("old", "new"):
        print(f"stop reasons {s}: " + ", ".join(f"{k} {v:,}" for k, v in stops[s].most_common()))
    if paired:
        print(
            f"paired (same entities), 90% bootstrap: cost per entity new-old {paired['cost_diff_usd']:+.4f} USD "
            f"[{paired['cost_diff_ci'][0]:+.4f}, {paired['cost_diff_ci'][1]:+.4f}]; actionable calls new-old "
            f"{paired['actionable_diff']:+d}; both agree on {paired['agree']:.1%} of entities"
        )
    print(f"({len(new) + len(old):,} runs in {wall:.1f} s wall)")
    return 0


def _paired(new: list[RunResult], old: list[RunResult], truth) -> dict | None:
    """Paired differences over the same entities with a 90% percentile bootstrap of the mean cost difference."""
    import numpy as np

    # lazy: engine.rollout loads scipy.stats (~1 s); every CLI command imports this module to build its parser
    from engine.rollout.stats import bootstrap_interval

    if not new or [r.entity_id for r in new] != [r.entity_id for r in old]:
        return None
    diff = np.array([a.cost_usd - b.cost_usd for a, b in zip(new, old)])
    lo, hi = bootstrap_interval(lambda idx: diff[idx].mean(axis=1), len(diff), np.random.default_rng(0))
    return {
        "cost_diff_usd": float(diff.mean()),
        "cost_diff_ci": [float(lo), float(hi)],
        "actionable_diff": sum(a.actionable for a in new) - sum(b.actionable for b in old),
        "agree": sum(a.actionable == b.actionable for a, b in zip(new, old)) / len(new),
    }


# --------------------------------------------------------------------------- bench


def cmd_bench_discovery(args: argparse.Namespace) -> int:
    params = ParameterConfig.load(args.config_file) if args.config_file else ParameterConfig()
    bench_discovery(args.entities, args.seed, args.world_seed, params, now=VIRTUAL_NOW)
    return 0
