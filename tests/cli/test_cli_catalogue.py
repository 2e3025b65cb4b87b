"""`python -m engine seed | import | stats | demo | store` as a user runs them: real processes, real stores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from engine.catalogue.generator import DEMO_ENTITIES, generate_catalogue
from engine.cli.common import actor
from engine.core.settings import REPO_ROOT, Settings
from engine.store import falkor
from engine.store.access import grant
from engine.store.graph import GraphStore
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN
from tests.support.cli import one_line_error

PY = sys.executable


@pytest.fixture
def cli(tmp_path):
    """Run the CLI against a fresh data dir; the embedded server is stopped at teardown."""
    settings = Settings(data_dir=tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k not in ("FALKORDB_URL", "DISCOVERY_GRAPH")}
    env.update(DISCOVERY_DATA_DIR=str(settings.data_dir), PYTHONPATH=str(REPO_ROOT))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([PY, "-m", "engine", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=240)  # fmt: skip
        if check:
            assert done.returncode == 0, done.stderr
        return done

    run.settings = settings
    run.env = env
    try:
        yield run
    finally:
        falkor.stop_embedded_server(settings)


@pytest.mark.parametrize(
    "command",
    [["seed"], ["import"], ["stats"], ["demo"], ["store"], ["store", "start"], ["store", "stop"], ["store", "status"]],
)
def test_every_catalogue_command_has_help(command, capsys):
    from engine.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m engine " + " ".join(command))


@pytest.mark.slow  # starts or kills real processes
def test_seed_prints_what_it_wrote_and_how_long_it_took_and_is_audited(cli):
    done = cli("seed", "--entities", "40", "--seed", "3")
    assert re.fullmatch(
        r"seeded 40 entities and [\d,]+ hypotheses in \d+\.\d s \(40 new; the graph holds 40 entities\)\n", done.stdout
    )
    again = cli("seed", "--entities", "40", "--seed", "3")
    assert "(0 new; the graph holds 40 entities)" in again.stdout
    with GraphStore.open(cli.settings) as store:
        assert sorted(store.list_entity_ids()) == sorted(e.id for e in generate_catalogue(40, 3))
    audit = open_ops_db(cli.settings).list_audit(action="seed")
    assert [a["details"]["new_entities"] for a in audit] == [0, 40]
    assert {a["actor"] for a in audit} == {str(actor())} and {a["target"] for a in audit} == {"catalogue:3"}


@pytest.mark.slow  # starts or kills real processes
def test_stats_text_and_json_agree_with_the_store(cli):
    cli("seed", "--entities", "25", "--seed", "5")
    stats = json.loads(cli("stats", "--json").stdout)
    with GraphStore.open(cli.settings) as store:
        real = store.stats()
    assert stats["entities"] == real.entities == 25
    assert stats["hypotheses"] == real.hypotheses and stats["by_status"] == real.by_status
    text = cli("stats", "--top", "3").stdout
    assert re.search(r"^entities\s+25$", text, re.M)
    assert re.search(rf"^hypotheses\s+{real.hypotheses:,}$", text, re.M)
    assert f"entities by cluster (top 3 of {len(real.by_cluster)})" in text


@pytest.mark.slow  # starts or kills real processes
def test_bad_input_exits_2_with_one_line_and_writes_nothing(cli, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,template\nGood Town FC,tier1_club\nA FC,nope\n,tier1_club\n")
    error = one_line_error(cli("import", str(bad), check=False))
    assert "row 2 (line 3): unknown template 'nope'" in error and "row 3 (line 4): missing name" in error
    assert "nothing written" in error
    one_line_error(cli("import", str(tmp_path / "missing.csv"), check=False))
    one_line_error(cli("seed", "--entities", "-5", check=False))
    with GraphStore.open(cli.settings) as store:
        assert store.count_entities() == 0
    assert open_ops_db(cli.settings).list_audit() == []


@pytest.mark.slow  # starts or kills real processes
def test_import_then_stats_then_replace(cli, tmp_path):
    good = tmp_path / "mine.json"
    good.write_text(json.dumps([
        {"name": "Northside Rovers", "sport": "football", "country": "GB", "type": "club", "tier": 2},
        {"name": "Harbour Rugby Union", "sport": "rugby", "country": "NZ", "type": "federation", "tier": 1},
    ]))  # fmt: skip
    done = cli("import", str(good))
    assert done.stdout.startswith("imported 2 entities from mine.json (2 new, 0 replaced)")
    error = one_line_error(cli("import", str(good), check=False))
    assert "northside-rovers" in error and "--replace" in error
    assert "(0 new, 2 replaced)" in cli("import", str(good), "--replace").stdout
    assert json.loads(cli("stats", "--json").stdout)["entities"] == 2


_SEEDER = """
import sys
from engine.cli.main import main
print("ready", flush=True)
sys.stdin.readline()
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_seeders_starting_on_one_fresh_data_dir_share_one_server_and_lose_no_write(cli):
    """Two processes (console + CLI, two CLIs) hitting a fresh data dir at the same moment."""
    procs = [
        subprocess.Popen([PY, "-c", _SEEDER, "seed", "--entities", "300", "--seed", str(seed)], env=cli.env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (101, 202)
    ]  # fmt: skip
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
            assert "seeded 300 entities" in out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    expected = {e.id for seed in (101, 202) for e in generate_catalogue(300, seed)}
    with GraphStore.open(cli.settings) as store:
        assert set(store.list_entity_ids()) == expected
        hyps = store.get_hypotheses_many(sorted(expected))
        assert all(hyps[eid] for eid in expected)
    status = falkor.server_status(cli.settings)
    assert status.running and status.responding
    server_pids = [p.pid for p in __import__("psutil").process_iter(["name", "cwd"])
                   if "redis-server" in (p.info["name"] or "") and p.info["cwd"]
                   and _same_dir(p.info["cwd"], cli.settings.graph_dir)]  # fmt: skip
    assert server_pids == [status.pid]


def _same_dir(a, b) -> bool:
    """False for another user's server whose working dir was deleted (its cwd no longer resolves)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@pytest.mark.slow
def test_demo_ensure_from_two_processes_at_once_seeds_the_catalogue_once(cli):
    """What two `make run`s (or make run + a CLI) do on first start: 3,400 entities, not 6,800 or 0."""
    procs = [
        subprocess.Popen([PY, "-c", _SEEDER, "demo", "--ensure"], env=cli.env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    said = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert said[0].startswith("demo catalogue: seeded 3,400 entities")
    assert said[1] == "the graph already holds 3,400 entities: demo catalogue not loaded again"
    # a restart (the next `make run`) does not duplicate either
    assert "not loaded again" in cli("demo", "--ensure").stdout
    with GraphStore.open(cli.settings) as store:
        stats = store.stats()
    assert stats.entities == DEMO_ENTITIES
    assert stats.hypotheses == sum(stats.by_category.values())
    assert len(open_ops_db(cli.settings).list_audit(action="seed")) == 1


def test_a_cli_user_the_role_map_makes_a_viewer_cannot_write_the_catalogue(cli, tmp_path):
    """With a role map in which this OS user has no role, seed and import are refused in one line and write
    nothing; `demo --ensure` on a graph that has entities still exits 0 (so `make run` opens the console)."""
    cli("seed", "--entities", "10", "--seed", "3")  # a fresh data dir: the command line is admin
    grant(open_ops_db(cli.settings), ADMIN, "cli:someone-else", "admin")  # now this OS user is a viewer
    refused = cli("seed", "--entities", "20", "--seed", "4", check=False)
    assert "catalogue.import needs the operator role" in one_line_error(refused)
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([{"name": "Refused FC", "sport": "football", "country": "Nowhere", "tier": 1}]))
    refused = cli("import", str(data), check=False)
    assert "catalogue.import needs the operator role" in one_line_error(refused)
    with GraphStore.open(cli.settings) as store:
        assert store.count_entities() == 10
    ensured = cli("demo", "--ensure")
    assert "demo not loaded (demo.load needs the operator role" in ensured.stdout
    assert open_ops_db(cli.settings).list_audit(action="seed")[0]["details"]["entities"] == 10
