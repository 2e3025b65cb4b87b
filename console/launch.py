"""``python -m console.launch``: start the console (``streamlit run streamlit_app.py``) the safe way.

Before Streamlit starts: refuse a non-loopback address without sign-in (one line, exit 2) unless
``--insecure-no-auth``; when ``.streamlit/secrets.toml`` configures sign-in without a cookie secret,
generate one into the data dir and start Streamlit with the console's secrets file (console.signin).
``make run`` calls this; ``--check`` only decides (the Makefile checks before it starts the store).

Pure: no Streamlit import; Streamlit replaces this process (exec), so Ctrl-C and exit codes are its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from console.signin import (
    INSECURE_ENV,
    INSECURE_FLAG,
    OPERATOR_SECRETS,
    console_secrets_files,
    insecure_requested,
    read_secrets,
    signin_config,
    startup_refusal,
)
from engine.core.errors import DiscoveryError
from engine.core.settings import load_settings

#: the console's entry script in this checkout (absolute: whatever the working directory)
APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
INSECURE_HELP = f"serve beyond loopback without sign-in: everyone reaching it acts as admin (also {INSECURE_ENV}=1)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m console.launch", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--secrets", type=Path, default=OPERATOR_SECRETS, help="the secrets file with [auth]")
    p.add_argument(
        INSECURE_FLAG,
        action="store_true",
        help=INSECURE_HELP,  # md-safe: argparse help, not Markdown
    )
    p.add_argument("--check", action="store_true", help="only decide whether the console may start; exit 0 or 2")
    return p


def streamlit_command(host: str, port: int, secrets_files: list[Path]) -> list[str]:
    """The ``streamlit run`` command line for the console."""
    cmd = [
        sys.executable, "-m", "streamlit", "run", APP,
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    for f in secrets_files:
        cmd += ["--secrets.files", str(f)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    insecure = args.insecure_no_auth or insecure_requested(os.environ)
    try:
        config = signin_config(read_secrets(args.secrets))
        refusal = startup_refusal(args.host, signin_on=config is not None, insecure=insecure)
        if refusal:
            raise DiscoveryError(refusal)
        if args.check:
            return 0
        settings = load_settings().ensure_dirs()
        files = console_secrets_files(settings.data_dir, args.secrets)
    except DiscoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if insecure:
        os.environ[INSECURE_ENV] = "1"  # the console checks again at each page run (streamlit_app.py)
    cmd = streamlit_command(args.host, args.port, files)
    os.execv(cmd[0], cmd)
    return 0  # not reached: Streamlit replaced this process


if __name__ == "__main__":
    raise SystemExit(main())
