"""An append-only JSON Lines log that rotates by size and keeps N backups.

Several processes (the worker, the console, CLI runs) append to the same file
at once. Each append takes an exclusive ``fcntl.flock`` on a sibling lock file
(``<name>.lock``; not the log itself, because rotation renames the log and a
lock on a renamed inode would no longer exclude anyone), re-reads the size
under the lock, rotates if the new lines would not fit, and writes the lines
with one ``os.write`` on an ``O_APPEND`` descriptor, so no line is lost, torn
or interleaved with another writer's.

Rotation: ``metrics.jsonl`` -> ``metrics.jsonl.1`` -> ... -> ``metrics.jsonl.N``;
the oldest (``.N``) is dropped. A batch is never split across files; a batch
larger than ``max_bytes`` goes alone into a fresh file.

The log and its lock file are created owner-only (0600), whatever the
process umask: they hold what the operations database holds.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5


@dataclass(frozen=True)
class JsonlLog:
    """A rotating JSONL file. Cheap to construct; holds no open descriptor."""

    path: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.max_bytes <= 0:
            raise ConfigError(f"log max_bytes must be > 0, got {self.max_bytes}: pass a positive size in bytes")
        if self.backups < 0:
            raise ConfigError(f"log backups must be >= 0, got {self.backups}: pass how many old files to keep")

    @classmethod
    def for_settings(cls, settings, name: str = "metrics.jsonl", **kwargs) -> JsonlLog:
        """The log ``name`` in ``settings.log_dir``."""
        return cls(Path(settings.log_dir) / name, **kwargs)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def backup_path(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    # ------------------------------------------------------------------ writing

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append one JSON line per record, atomically as one batch. Returns the lines written."""
        lines = [json.dumps(r, separators=(",", ":"), sort_keys=True, default=_json_default) for r in records]
        if not lines:
            return 0
        # json.dumps escapes control characters, so a record can never contain a raw newline.
        data = ("\n".join(lines) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            # Size is re-read under the lock: another writer may just have rotated or grown the file.
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                size = 0
            if size > 0 and size + len(data) > self.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:  # a regular file takes it in one go; loop only to be correct if not
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                os.close(fd)
        finally:
            os.close(lock_fd)  # closing releases the flock
        return len(lines)

    def write(self, record: dict[str, Any]) -> None:
        self.append([record])

    def _rotate(self) -> None:
        """Shift ``.i`` to ``.i+1``, drop the oldest, move the live file to ``.1``. Caller holds the lock."""
        if self.backups == 0:
            os.unlink(self.path)
            return
        try:
            os.unlink(self.backup_path(self.backups))
        except FileNotFoundError:
            pass
        for i in range(self.backups - 1, 0, -1):
            try:
                os.rename(self.backup_path(i), self.backup_path(i + 1))
            except FileNotFoundError:
                pass
        os.rename(self.path, self.backup_path(1))

    # ------------------------------------------------------------------ reading

    def files(self) -> list[Path]:
        """Existing files, oldest first (``.N`` ... ``.1``, then the live file)."""
        paths = [self.backup_path(i) for i in range(self.backups, 0, -1)] + [self.path]
        return [p for p in paths if p.exists()]

    def read(self) -> Iterator[dict[str, Any]]:
        """Every record still kept, oldest first."""
        for p in self.files():
            with open(p, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
