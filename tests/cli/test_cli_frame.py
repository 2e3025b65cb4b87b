"""The CLI frame: a reader that stops early (`python -m engine stats | head`) ends the command quietly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import argparse, sys
    from engine.cli import main as cli

    def chatty(args):
        for i in range(int(sys.argv[1])):
            print("line", i)
        return 0

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=chatty)
    cli.build_parser = lambda: parser
    sys.exit(cli.main([]))
    """
)


def run_and_close_after_one_line(lines: int) -> tuple[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lines)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), err


@pytest.mark.slow  # starts or kills real processes
def test_reader_gone_mid_output_ends_quietly_with_the_sigpipe_code():
    code, err = run_and_close_after_one_line(200_000)  # far more than a pipe buffer holds
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert code == 141
