"""Settings: the one place that reads the environment.

Every other module receives a ``Settings`` value; nothing else reads
``os.environ`` for store locations.

``DISCOVERY_DATA_DIR``  where the embedded graph files and the SQLite file live
                        (default: ``<repo>/data/run``; never the shipped ``data/`` files)
``FALKORDB_URL``        e.g. ``redis://host:6379``: use a real FalkorDB server
                        instead of the embedded one
``DISCOVERY_GRAPH``     graph name inside FalkorDB (default ``discovery``)

Private by default: the data dir holds the operations database, logs and the
graph's AOF/RDB, so it is 0700 and every file in it 0600. Entry points call
``make_process_private()`` first (umask 077, inherited by the embedded
redis-server they start); ``ensure_dirs`` creates the folders 0700 and
tightens a data dir created before this rule (a 0755 folder, 0644 files).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from engine.core.secrets import mask_url

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DATA_DIR = REPO_ROOT / "data"
DEFAULT_DATA_DIR = SHIPPED_DATA_DIR / "run"
DEFAULT_GRAPH = "discovery"

#: umask of every entry point (CLI, worker, console): new files 0600, new folders 0700
PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
#: permission bits no one but the owner may hold on anything under the data dir
OPEN_BITS = 0o077
#: folders of the data dir the product writes (logs, the graph, saved configs, tuning outputs)
PRODUCT_FOLDERS = ("logs", "falkordb", "configs", "tuning")


def make_process_private() -> None:
    """Set the umask so everything this process (and a server it starts) creates is owner-only."""
    os.umask(PRIVATE_UMASK)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    falkordb_url: str | None = None
    graph_name: str = DEFAULT_GRAPH

    @property
    def ops_db_path(self) -> Path:
        return self.data_dir / "ops.sqlite"

    @property
    def graph_dir(self) -> Path:
        """Directory of the embedded FalkorDB server (RDB, AOF, socket, pid, log)."""
        return self.data_dir / "falkordb"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def store_label(self) -> str:
        """Human description of where the graph lives, for messages (credentials masked)."""
        return mask_url(self.falkordb_url) if self.falkordb_url else f"embedded FalkorDB in {self.graph_dir}"

    def __repr__(self) -> str:
        # a Settings printed in a log or a traceback must not carry the FALKORDB_URL password
        return (
            f"Settings(data_dir={str(self.data_dir)!r}, falkordb_url={mask_url(self.falkordb_url) or None!r}, "
            f"graph_name={self.graph_name!r})"
        )

    def with_data_dir(self, data_dir: Path | str) -> Settings:
        return replace(self, data_dir=Path(data_dir))

    def ensure_dirs(self) -> Settings:
        """Create the data dir and its folders owner-only (0700); tighten them if they are more open.

        A data dir found more open than that (created before this rule) has
        its files tightened once too (group and other bits off): the files at
        its top level and everything under PRODUCT_FOLDERS. Anything else
        someone keeps there is left alone; the 0700 data dir already keeps
        other users out of it.
        """
        folders = (self.data_dir, self.log_dir, *(() if self.falkordb_url else (self.graph_dir,)))
        loosened = False
        for folder in folders:
            folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            loosened = _tighten(folder) or loosened
        if loosened:
            for entry in self.data_dir.iterdir():
                if not entry.is_dir():
                    _tighten(entry)
            for folder in (self.data_dir / name for name in PRODUCT_FOLDERS):
                _tighten(folder)
                for root, dirs, files in os.walk(folder):
                    for name in (*dirs, *files):
                        _tighten(Path(root) / name)
        return self


def _tighten(path: Path) -> bool:
    """Clear group/other permission bits of ``path``; True when it had any. Not ours to change: left alone."""
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not mode & OPEN_BITS:
            return False
        path.chmod(stat.S_IMODE(mode) & ~OPEN_BITS)
    except OSError:
        return False  # gone meanwhile, or owned by someone else
    return True


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read settings from the environment (or the mapping given)."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("DISCOVERY_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()
    url = (env.get("FALKORDB_URL") or "").strip() or None
    graph = (env.get("DISCOVERY_GRAPH") or "").strip() or DEFAULT_GRAPH
    return Settings(data_dir=data_dir, falkordb_url=url, graph_name=graph)
