"""Settings: the one place that reads the environment.

Every other module receives a ``Settings`` value; nothing else reads
``os.environ`` for store locations.

``DISCOVERY_DATA_DIR``  where the embedded graph files and the SQLite file live
                        (default: ``<repo>/data/run``; never the shipped ``data/`` files)
``FALKORDB_URL``        e.g. ``redis://host:6379``: use a real FalkorDB server
                        instead of the embedded one
``DISCOVERY_GRAPH``     graph name inside FalkorDB (default ``discovery``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DATA_DIR = REPO_ROOT / "data"
DEFAULT_DATA_DIR = SHIPPED_DATA_DIR / "run"
DEFAULT_GRAPH = "discovery"


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
        """Human description of where the graph lives, for messages."""
        return self.falkordb_url or f"embedded FalkorDB in {self.graph_dir}"

    def with_data_dir(self, data_dir: Path | str) -> Settings:
        return replace(self, data_dir=Path(data_dir))

    def ensure_dirs(self) -> Settings:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.falkordb_url:
            self.graph_dir.mkdir(parents=True, exist_ok=True)
        return self


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read settings from the environment (or the mapping given)."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("DISCOVERY_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()
    url = (env.get("FALKORDB_URL") or "").strip() or None
    graph = (env.get("DISCOVERY_GRAPH") or "").strip() or DEFAULT_GRAPH
    return Settings(data_dir=data_dir, falkordb_url=url, graph_name=graph)
