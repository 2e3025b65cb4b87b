"""The scale benchmark: `python -m engine bench scale`.

Starts the local HTTP evaluator (engine.discovery.evaluator_server) on
127.0.0.1, which answers from the simulated world and really sleeps each hop's
latency times ``latency_factor``; then runs the same N generated catalogue
entities (fresh hypotheses, new system, shadow, nothing stored) through the
HTTP evidence source against it at each concurrency, and prints wall time,
hops/s, speed-up over the first concurrency, the evaluator's observed peak
in-flight, whether every entity's result equals the first concurrency's, and
what one 3,400-entity pass would take at the world's unscaled latencies.
Then the rollout runner's paired entities/s in virtual time (the rollout
benchmark, engine.bench.rollout, called as it is) and the peak RSS of this
process.

Why: the issue's targets are about a latency-bound evaluator (seconds per
hop); sleeping scaled latencies keeps the benchmark to minutes while keeping
the shape of the waiting, and answering from the world keeps the answers
realistic and deterministic, so "same results at any concurrency" is checked
on every run.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.catalogue.generator import generate_catalogue, templates_for
from engine.catalogue.templates import load_templates
from engine.core.errors import ConfigError
from engine.core.model import RunResult
from engine.core.params import ParameterConfig
from engine.discovery.evaluator_server import EVALUATE_PATH, HEALTH_PATH, RESET_PATH, EvaluatorServer
from engine.discovery.runs import EvidenceSpec, make_source
from engine.discovery.systems import run_batch

DEFAULT_ENTITIES = 200
DEFAULT_CONCURRENCY = (1, 8, 32, 128)
DEFAULT_LATENCY_FACTOR = 0.01
DEFAULT_ROLLOUT_ENTITIES = 3400
#: the catalogue a pass is projected to (the product's production stage)
CATALOGUE_SIZE = 3400
#: the frozen clock of the in-memory runs (the same as `compare --catalogue`)
VIRTUAL_NOW = 1_700_000_000.0
#: the client's whole-hop deadline: well above the world's slowest hop (a 30 s timeout) at any factor <= 1
EVALUATOR_TIMEOUT_S = 120.0
PROJECTION_FORMULA = "projected pass = (wall / latency factor) x {n:,} / N"
#: a stage line of the rollout benchmark: "  production   3400 entities in    60.1 s =   56.5 paired entities/s ..."
_ROLLOUT_STAGE = re.compile(
    r"^\s*(?P<stage>\S+)\s+(?P<n>[\d,]+) entities in\s+(?P<s>[\d.]+) s =\s+(?P<rate>[\d.]+) paired"
)


@dataclass(frozen=True)
class ScaleRow:
    """One concurrency's figures."""

    concurrency: int
    wall_s: float
    hops: int
    hops_per_s: float
    speedup: float
    peak_in_flight: int
    identical: bool
    differing_entities: int
    errored_hops: int
    projected_pass_h: float


def run_fingerprint(result: RunResult) -> tuple:
    """What must not change with concurrency: every hop's choice, answer and cost, the outcomes and the stop.

    Latencies and engine time are left out: over HTTP they are measured, not drawn, and differ run to run.
    """
    return (
        result.entity_id,
        result.system,
        result.iterations,
        result.cost_usd,
        result.stop_reason,
        result.actionable,
        result.errors,
        tuple(
            (h.hypothesis_id, h.hop_type.value, int(h.depth), h.decision.value, h.cost_usd, h.confidence_after, h.error)
            for h in result.hops
        ),
        result.outcomes,
    )


def projected_pass_h(wall_s: float, latency_factor: float, entities: int, catalogue: int = CATALOGUE_SIZE) -> float:
    """Hours one ``catalogue``-entity pass would take at unscaled latencies: (wall / factor) x catalogue / N."""
    return wall_s / latency_factor * catalogue / entities / 3600.0


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rollout_rate(lines: Sequence[str]) -> tuple[str, int, float] | None:
    """(stage, entities, paired entities/s) of the production stage, else the last stage, the rollout
    benchmark printed; None when it printed no stage figures."""
    found = [m for m in (_ROLLOUT_STAGE.match(line) for line in lines) if m]
    if not found:
        return None
    m = next((m for m in found if m["stage"] == "production"), found[-1])
    return m["stage"], int(m["n"].replace(",", "")), float(m["rate"])


def _batch(entities, templates, source, params: ParameterConfig, concurrency: int) -> list[RunResult]:
    return run_batch(entities, templates, source, params, "new", now=VIRTUAL_NOW, concurrency=concurrency)


class EvaluatorProcess:
    """The local evaluator in its own process (``python -m engine evaluator --port 0``), as a real evaluator is
    another service: its request handling does not share this process's GIL with the client's threads. The
    same surface as EvaluatorServer for the benchmark: ``url``, ``reset()``, ``peak_in_flight``."""

    def __init__(self, world_seed: int, latency_factor: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "evaluator", "--port", "0", "--world-seed", str(world_seed),
             "--latency-factor", repr(latency_factor)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        first = self.proc.stdout.readline() if self.proc.stdout else ""
        found = re.search(r"(http://[\w.]+:\d+/evaluate)", first)
        if not found:
            self.stop()
            raise ConfigError(f"the local evaluator did not start: {first.strip() or 'no output'}")
        self.url = found[1]

    def _call(self, method: str, path: str) -> dict[str, Any]:
        req = urllib.request.Request(
            self.url.replace(EVALUATE_PATH, path), method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return dict(json.loads(resp.read() or b"{}"))

    def reset(self) -> None:
        self._call("POST", RESET_PATH)

    @property
    def peak_in_flight(self) -> int:
        return int(self._call("GET", HEALTH_PATH)["peak_in_flight"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()

    def __enter__(self) -> EvaluatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def measure_concurrency(
    entities: int,
    concurrency: Sequence[int],
    *,
    latency_factor: float = DEFAULT_LATENCY_FACTOR,
    world_seed: int = 1,
    seed: int = 7,
    params: ParameterConfig | None = None,
    on_row: Callable[[ScaleRow], None] = lambda row: None,
    separate_process: bool = True,
) -> tuple[list[ScaleRow], str]:
    """Run the same ``entities`` through a fresh local evaluator at each concurrency; (rows, evaluator URL).

    The first concurrency is the baseline of speed-up and identity. The evaluator's attempt counters and
    peak are reset before each concurrency, and a fresh HTTP source is built for each. ``separate_process``:
    the evaluator runs in its own process (EvaluatorProcess, the default), else in this one.
    """
    params = params or ParameterConfig()
    catalogue = generate_catalogue(entities, seed)
    templates = templates_for(catalogue, load_templates())
    rows: list[ScaleRow] = []
    baseline: list[tuple] | None = None
    base_wall = 0.0
    evaluator = EvaluatorProcess if separate_process else EvaluatorServer
    with evaluator(world_seed=world_seed, latency_factor=latency_factor) as server:
        for c in concurrency:
            server.reset()
            source = make_source(EvidenceSpec(kind="http", url=server.url, timeout_s=EVALUATOR_TIMEOUT_S))
            t0 = time.perf_counter()
            results = _batch(catalogue, templates, source, params, c)
            wall = time.perf_counter() - t0
            prints = [run_fingerprint(r) for r in results]
            if baseline is None:
                baseline, base_wall = prints, wall
            differing = sum(1 for a, b in zip(prints, baseline) if a != b) + abs(len(prints) - len(baseline))
            hops = sum(len(r.hops) for r in results)
            row = ScaleRow(
                concurrency=c,
                wall_s=wall,
                hops=hops,
                hops_per_s=hops / max(wall, 1e-9),
                speedup=base_wall / max(wall, 1e-9),
                peak_in_flight=server.peak_in_flight,
                identical=differing == 0,
                differing_entities=differing,
                errored_hops=sum(r.error_count for r in results),
                projected_pass_h=projected_pass_h(wall, latency_factor, entities),
            )
            rows.append(row)
            on_row(row)
        return rows, server.url


TABLE_HEADER = (
    f"{'concurrency':>11} {'wall s':>8} {'hops':>7} {'hops/s':>8} {'speed-up':>8} {'per worker':>10} "
    f"{'peak in flight':>14} {'errored':>7} {'same results':>12} {'projected pass':>14}"
)


def format_row(row: ScaleRow, baseline: int) -> str:
    same = "yes" if row.identical else f"no ({row.differing_entities})"
    return (
        f"{row.concurrency:>11} {row.wall_s:>8.2f} {row.hops:>7,} {row.hops_per_s:>8.1f} {row.speedup:>7.1f}x "
        f"{row.speedup / (row.concurrency / baseline):>10.2f} {row.peak_in_flight:>14} {row.errored_hops:>7} "
        f"{same:>12} {row.projected_pass_h:>12.2f} h"
    )


def run_scale_bench(
    entities: int = DEFAULT_ENTITIES,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    *,
    latency_factor: float = DEFAULT_LATENCY_FACTOR,
    world_seed: int = 1,
    seed: int = 7,
    rollout_entities: int = DEFAULT_ROLLOUT_ENTITIES,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure and print (through ``echo``; pass a no-op for JSON) every figure; returns them as a dict.

    ``ok`` is True when every concurrency gave the baseline's per-entity results and the rollout benchmark
    (skipped when ``rollout_entities`` is 0) succeeded.
    """
    base = concurrency[0]
    echo(
        f"bench scale: {entities:,} catalogue entities (seed {seed}), new system, shadow, HTTP evidence against a "
        f"local evaluator (its own process) answering from simulated world seed {world_seed}, sleeping each hop's "
        f"latency x {latency_factor:g}"
    )
    echo(TABLE_HEADER)
    rows, url = measure_concurrency(
        entities,
        concurrency,
        latency_factor=latency_factor,
        world_seed=world_seed,
        seed=seed,
        on_row=lambda row: echo(format_row(row, base)),
    )
    formula = PROJECTION_FORMULA.format(n=CATALOGUE_SIZE)
    echo(
        f"evaluator {url}; speed-up and same results are against concurrency {base}; per worker = speed-up / "
        f"(concurrency / {base}); {formula} (the world's unscaled latencies, engine and HTTP overhead scaled up too)"
    )
    rss_http = peak_rss_mib()
    echo(f"peak RSS of this process after the HTTP runs: {rss_http:,.0f} MiB")
    rollout: dict[str, Any] | None = None
    if rollout_entities > 0:
        # lazy: the rollout benchmark loads the whole rollout package (scipy.stats); --rollout-entities 0 skips it
        from engine.bench.rollout import run_rollout_bench

        lines: list[str] = []

        def keep(line: str) -> None:
            lines.append(line)
            echo(f"  {line}")

        echo(f"rollout runner, virtual time, {rollout_entities:,} entities (python -m engine bench rollout):")
        ok = run_rollout_bench(rollout_entities, seed, echo=keep)
        rate = rollout_rate(lines)
        rollout = {
            "entities": rollout_entities,
            "succeeded": ok,
            "stage": rate[0] if rate else None,
            "stage_entities": rate[1] if rate else None,
            "paired_entities_per_s": rate[2] if rate else None,
            "lines": lines,
        }
        if rate:
            echo(
                f"rollout runner: {rate[2]:.1f} paired entities/s in virtual time "
                f"({rate[0]} stage, {rate[1]:,} entities)"
            )
    rss = peak_rss_mib()
    echo(f"peak RSS of this process: {rss:,.0f} MiB")
    ok = all(r.identical for r in rows) and (rollout is None or bool(rollout["succeeded"]))
    return {
        "entities": entities,
        "seed": seed,
        "world_seed": world_seed,
        "latency_factor": latency_factor,
        "baseline_concurrency": base,
        "evaluator_url": url,
        "projection": formula,
        "rows": [asdict(r) for r in rows],
        "rollout": rollout,
        "peak_rss_mib_after_http": rss_http,
        "peak_rss_mib": rss,
        "ok": ok,
    }
