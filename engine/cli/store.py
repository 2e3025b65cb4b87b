"""`python -m engine store start|stop|status` and `python -m engine bench graph`.

(`bench store`, the store-speed benchmark with cache and batch figures, lives in
engine/bench/store.py; `bench graph` times the plain GraphStore calls.)

A server started by `store start` (or by the console) outlives the process that
starts it, so the console and the CLIs share it; one that an ordinary command had
to start is stopped when that command exits and no one else uses it
(engine.store.falkor, "No orphan servers"). These commands start, stop and
inspect it, and `store status` lists every embedded server of this user.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from engine.cli.args import ENTITIES, SEED, whole
from engine.core.errors import StoreUnavailable
from engine.core.model import Channel, Decision, Entity, HopType, Hypothesis, Pattern, Template, apply_decision
from engine.core.settings import Settings, load_settings
from engine.store import falkor
from engine.store.graph import GraphStore

#: hypotheses per synthetic entity of `bench graph`
PATTERNS = whole(1, 100)


def register(subparsers: argparse._SubParsersAction) -> None:
    store = subparsers.add_parser(
        "store",
        help="start, stop or inspect the graph store (the embedded FalkorDB server of the data dir)",
        description=(
            "The embedded FalkorDB server (one per DISCOVERY_DATA_DIR): `store start` starts one that keeps "
            "running, shared by the console and the CLIs, until `store stop`; a server another command had "
            "to start stops when that command exits and nothing else uses it. With FALKORDB_URL set, these "
            "commands only check the remote server."
        ),
    )
    sub = store.add_subparsers(dest="store_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser(
        "start", help="start the embedded server if it is not running, wait until it answers, keep it running"
    )
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", help="SHUTDOWN SAVE the embedded server and wait for it to exit (ok if not running)")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser(
        "status",
        help="say whether the embedded server runs (exit 0) or not (exit 1); list every embedded server of this user",
    )
    p.set_defaults(func=cmd_status)


def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    p = bench_subparsers.add_parser(
        "graph",
        help="seed synthetic entities into a throwaway embedded graph and print how long each GraphStore call takes",
        description=(
            "Measures GraphStore on a fresh embedded FalkorDB in a temporary directory (your data dir is not "
            "touched): upsert of N entities with their hypotheses, count, batched reads, apply_run, "
            "snapshot/restore and stats. Prints seconds and rates measured in this one run."
        ),
    )
    p.add_argument("--entities", type=ENTITIES, default=3400, help="how many synthetic entities (default 3400)")
    p.add_argument("--patterns", type=PATTERNS, default=8, help="hypotheses per entity, 1 to 100 (default 8)")
    p.add_argument("--seed", type=SEED, default=7, help="seed of the synthetic catalogue (default 7)")
    p.set_defaults(func=cmd_bench_graph)


# --------------------------------------------------------------------------- store commands


def _settings() -> Settings:
    return load_settings()


def cmd_start(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.falkordb_url:
        falkor.connect(settings).close()
        print(f"FALKORDB_URL is set: {falkor._redact(settings.falkordb_url)} is reachable (nothing to start)")
        return 0
    settings.ensure_dirs()
    falkor.ensure_embedded_server(settings, keep=True)
    status = falkor.server_status(settings)
    print(
        f"embedded FalkorDB running: pid {status.pid}, socket {status.socket}, data {status.graph_dir} "
        "(kept running until `store stop`)"
    )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.falkordb_url:
        print("FALKORDB_URL is set: the remote server is not ours to stop")
        return 0
    started = time.perf_counter()
    if falkor.stop_embedded_server(settings):
        print(f"embedded FalkorDB in {settings.graph_dir} saved and stopped in {time.perf_counter() - started:.2f}s")
    else:
        print(f"embedded FalkorDB in {settings.graph_dir} was not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.falkordb_url:
        try:
            falkor.connect(settings).close()
        except StoreUnavailable as exc:
            print(f"not reachable: {exc}")
            return 1
        print(f"FalkorDB at {falkor._redact(settings.falkordb_url)}: reachable (graph {settings.graph_name!r})")
        return 0
    status = falkor.server_status(settings)
    servers = falkor.embedded_servers()
    if not status.running:
        print(f"embedded FalkorDB in {status.graph_dir}: not running (starts on first use, or `store start`)")
    else:
        autostop = (status.graph_dir / falkor.AUTOSTOP_NAME).exists()
        print(f"embedded FalkorDB in {status.graph_dir}: running")
        print(f"  pid        {status.pid}")
        print(f"  socket     {status.socket}")
        print(f"  responding {'yes' if status.responding else 'no (loading or hung: see the log)'}")
        print(f"  log        {status.graph_dir / falkor.LOG_NAME}")
        print(f"  graph      {settings.graph_name!r}")
        print(f"  lifetime   {_lifetime(autostop)}")
    print(format_servers(servers, this=status.pid, now=time.time()))
    return 0 if status.running else 1


def _lifetime(autostop: bool) -> str:
    if autostop:
        return "started by a command: stops when the last command or worker using it exits"
    return "kept running until `store stop`"


def _uptime(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def format_servers(servers: list[falkor.RunningServer], *, this: int | None, now: float) -> str:
    """The table of this user's embedded servers `store status` prints (``falkor.RunningServer`` rows)."""
    if not servers:
        return "embedded FalkorDB servers of this user: none"
    lines = [f"embedded FalkorDB servers of this user: {len(servers)}"]
    lines.append(f"  {'pid':>8}  {'uptime':>8}  {'clients':>7}  {'lifetime':<8}  data dir / listening on")
    for server in servers:
        clients = "?" if server.clients is None else str(server.clients)
        lifetime = "autostop" if server.autostop else "kept"
        where = server.data_dir or (f"not a Discovery data dir (cwd {server.workdir})" if server.workdir else "?")
        mark = "  <- this data dir" if server.pid == this else ""
        lines.append(
            f"  {server.pid:>8}  {_uptime(now - server.started_at):>8}  {clients:>7}  {lifetime:<8}  {where}{mark}"
        )
        lines.append(f"  {'':>8}  {'':>8}  {'':>7}  {'':<8}  {server.listen}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- bench


def synthetic_catalogue(n: int, patterns: int, seed: int, now: float):
    """A reproducible synthetic catalogue for measuring the store (not the shipped generator)."""
    rng = random.Random(seed)
    categories = ["C-Suite Hiring", "CRM Implementation", "Ticketing", "Digital Transformation",
                  "Data Analytics", "Fan Engagement", "IT Modernization", "Strategic Hire"]  # fmt: skip
    template = Template(
        id="bench-template",
        name="Bench template",
        patterns=tuple(
            Pattern(
                f'Pattern {i} "{categories[i % len(categories)]}"',
                categories[i % len(categories)],
                round(0.2 + 0.05 * (i % 6), 2),
                (f"kw{i}",),
            )
            for i in range(patterns)
        ),  # fmt: skip
        channels=tuple(Channel(h, i + 1) for i, h in enumerate(HopType)),
    )
    sports = ["football", "rugby", "cricket", "basketball", "tennis", "cycling"]
    countries = ["GB", "DE", "FR", "ES", "IT", "US", "AU", "NL"]
    entities: list[Entity] = []
    hyps: list[Hypothesis] = []
    for i in range(n):
        sport, country = rng.choice(sports), rng.choice(countries)
        e = Entity(
            id=f"bench-{i:05d}",
            name=f"Bench {sport.title()} Club {i} ({country})",
            sport=sport,
            country=country,
            type=rng.choice(["club", "federation", "league", "agency"]),
            tier=rng.randint(1, 3),
            cluster=f"{country.lower()}-{sport}",
            template_id=template.id,
        )
        entities.append(e)
        hyps.extend(Hypothesis.new(e.id, p, now) for p in template.patterns)
    return template, entities, hyps


def cmd_bench_graph(args: argparse.Namespace) -> int:
    if args.entities < 1 or args.patterns < 1:
        raise StoreUnavailable("bench graph needs --entities >= 1 and --patterns >= 1")
    tmp = Path(tempfile.mkdtemp(prefix="discovery-bench-store-"))
    settings = Settings(data_dir=tmp / "data", graph_name="bench").ensure_dirs()
    now = 1_700_000_000.0
    template, entities, hyps = synthetic_catalogue(args.entities, args.patterns, args.seed, now)
    figures: list[tuple[str, float, str]] = []

    def timed(label: str, fn, detail=lambda r: ""):
        t0 = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t0
        figures.append((label, elapsed, detail(result)))
        return result

    try:
        store = timed("start embedded server + schema", lambda: GraphStore.open(settings))
        try:
            store.upsert_templates([template])
            timed(
                f"upsert {len(entities)} entities + {len(hyps)} hypotheses",
                lambda: store.upsert_entities(entities, hyps),
            )
            label, seconds, _ = figures[-1]
            figures[-1] = (label, seconds, f"{(len(entities) + len(hyps)) / seconds:,.0f} nodes/s")
            timed("re-upsert (idempotent)", lambda: store.upsert_entities(entities, hyps))
            count = timed("count_entities", store.count_entities, lambda r: f"= {r}")
            if count != len(entities):
                raise StoreUnavailable(f"bench graph: counted {count} entities after upserting {len(entities)}")
            ids = [e.id for e in entities]
            timed("get_hypotheses_many(all)", lambda: store.get_hypotheses_many(ids),
                  lambda r: f"{sum(map(len, r.values()))} hypotheses")  # fmt: skip
            sample = ids[: min(100, len(ids))]
            timed(f"get_hypotheses x{len(sample)} (one by one)", lambda: [store.get_hypotheses(i) for i in sample])
            snap = timed("snapshot(all)", lambda: store.snapshot(ids))
            first = store.get_hypotheses(ids[0])
            changed = [apply_decision(h, Decision.ACCEPT, now + 1) for h in first]
            timed("apply_run (1 entity, no evidence)", lambda: store.apply_run(ids[0], "bench", "new", changed, []))
            timed("restore(all)", lambda: store.restore(snap))
            if store.get_hypotheses(ids[0]) != first:
                raise StoreUnavailable("bench graph: restore did not bring the first entity back")
            timed("stats", store.stats, lambda r: f"{r.hypotheses} hypotheses")
            timed("search_entities('club 12')", lambda: store.search_entities("club 12"), lambda r: f"{len(r)} hits")
        finally:
            store.close()
        timed("stop (SHUTDOWN SAVE)", lambda: falkor.stop_embedded_server(settings))
    finally:
        falkor.stop_embedded_server(settings)
        shutil.rmtree(tmp, ignore_errors=True)

    width = max(len(f[0]) for f in figures)
    print(f"bench graph: {args.entities} entities x {args.patterns} patterns, embedded FalkorDB, seed {args.seed}")
    for label, seconds, detail in figures:
        print(f"  {label:<{width}}  {seconds:8.3f}s  {detail}")
    return 0
