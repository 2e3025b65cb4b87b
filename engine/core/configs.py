"""Which ParameterConfig runs where: the live config and the handed-over candidate.

Two settings in the ops database decide it. The **live** config is what
production runs (the old system in a rollout, every entity no rollout has
exposed); it is the last candidate a rollout promoted, or the defaults. The
**candidate** is what a person (or a tuning study's handoff) gave the next
rollout to try. Every area that needs to know which config applies (rollout,
tuning's trial 0, the CLI's discover/compare, the entity view) asks here, so
the answer is the same everywhere. See the README's "Staged rollout" section.

``ops`` is any object with the OpsDB settings and audit calls
(``get_setting``, ``set_setting``, ``transaction``, ``audit``); this module
imports no store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.core.params import PARAMETER_SPECS, ParameterConfig

#: settings_kv keys (names kept from the first release: existing data dirs keep their configs)
CANDIDATE_KEY = "rollout.candidate"
LIVE_CONFIG_KEY = "rollout.live_config"


class SettingsStore(Protocol):
    """The part of OpsDB this module uses."""

    def get_setting(self, key: str, default: Any = None) -> Any: ...

    def set_setting(self, key: str, value: Any, *, db: Any = None) -> None: ...

    def transaction(self) -> Any: ...

    def audit(self, actor: str, action: str, target: str, detail: Any = None, *, db: Any = None) -> Any: ...


@dataclass(frozen=True)
class ResolvedConfig:
    """A config and a short label that says where it came from (shown to operators)."""

    config: ParameterConfig
    label: str


@dataclass(frozen=True)
class ParamChange:
    """One parameter whose value differs between two configs, with what bounds it."""

    name: str
    old: float | int
    new: float | int
    default: float | int
    low: float | int
    high: float | int
    group: str
    help: str

    @property
    def delta(self) -> float:
        return float(self.new) - float(self.old)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "old": self.old,
            "new": self.new,
            "default": self.default,
            "low": self.low,
            "high": self.high,
            "group": self.group,
        }


def config_diff(old: ParameterConfig, new: ParameterConfig) -> list[ParamChange]:
    """The parameters whose values differ from ``old`` to ``new``, in PARAMETER_SPECS order (empty: the same)."""
    changes = []
    for spec in PARAMETER_SPECS:
        a, b = getattr(old, spec.name), getattr(new, spec.name)
        if a != b:
            changes.append(ParamChange(spec.name, a, b, spec.default, spec.low, spec.high, spec.group, spec.help))
    return changes


def describe_diff(changes: list[ParamChange], limit: int = 4) -> str:
    """A one-line summary: "max_iterations 20 → 30, delta_accept 0.06 → 0.08 and 3 more" ("no parameter differs")."""
    if not changes:
        return "no parameter differs"
    parts = [f"{c.name} {c.old:g} → {c.new:g}" for c in changes[:limit]]
    more = len(changes) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def live_config(ops: SettingsStore) -> ParameterConfig:
    """The config production runs with: the last promoted candidate, else the defaults."""
    data = ops.get_setting(LIVE_CONFIG_KEY)
    if not data:
        return ParameterConfig()
    return ParameterConfig.from_dict(data["params"], source="live config (settings_kv rollout.live_config)")


def live_config_info(ops: SettingsStore) -> dict[str, Any] | None:
    """Where the live config came from (hash, run, actor, time), or None for the defaults."""
    data = ops.get_setting(LIVE_CONFIG_KEY)
    return {k: v for k, v in data.items() if k != "params"} if data else None


def set_live_config(ops: SettingsStore, db: Any, cfg: ParameterConfig, *, run_id: int, actor: str, at: float) -> None:
    """Make ``cfg`` the live config inside the caller's transaction ``db`` (audited)."""
    info = {"hash": cfg.hash(), "run_id": run_id, "actor": actor, "at": at, "params": cfg.to_dict()}
    ops.set_setting(LIVE_CONFIG_KEY, info, db=db)
    ops.audit(actor, "rollout.live_config", cfg.hash(), {"run_id": run_id}, db=db)


def set_candidate(ops: SettingsStore, path: str | Path, actor: str, source: str = "file") -> dict[str, Any]:
    """Hand a candidate ParameterConfig file to the rollout (audited). Returns what was stored.

    The file is validated and its values are stored (a later edit or removal
    of the file does not change the candidate). The next rollout started
    without ``config_file`` runs the new system with it.
    """
    cfg = ParameterConfig.load(path)
    info = {
        "path": str(Path(path)),
        "hash": cfg.hash(),
        "source": str(source),
        "actor": actor,
        "at": time.time(),
        "params": cfg.to_dict(),
    }
    with ops.transaction() as db:
        ops.set_setting(CANDIDATE_KEY, info, db=db)
        ops.audit(actor, "rollout.candidate", cfg.hash(), {"path": info["path"], "source": info["source"]}, db=db)
    return info


def candidate_info(ops: SettingsStore) -> dict[str, Any] | None:
    """The handed-over candidate (path, hash, source, actor, at, params) or None."""
    info: dict[str, Any] | None = ops.get_setting(CANDIDATE_KEY)
    return info


def candidate_config(ops: SettingsStore) -> ParameterConfig | None:
    """The handed-over candidate as a ParameterConfig, or None when none was handed over."""
    info = candidate_info(ops)
    if not info:
        return None
    return ParameterConfig.from_dict(info["params"], source=f"candidate config ({info.get('path', '?')})")


def rollout_candidate(ops: SettingsStore, config_file: str | Path | None = None) -> ResolvedConfig:
    """What a rollout tries: ``config_file`` if given, else the candidate, else the live config."""
    if config_file is not None:
        return ResolvedConfig(ParameterConfig.load(config_file), f"file {config_file}")
    info = candidate_info(ops)
    cand = candidate_config(ops)
    if info and cand is not None:
        return ResolvedConfig(cand, f"candidate {info.get('path', '')} ({info.get('source', '')})")
    return ResolvedConfig(live_config(ops), "live config (new system, same parameters)")


def config_for_system(system: str, ops: SettingsStore | None, config_file: str | Path | None = None) -> ResolvedConfig:
    """The config one discovery run uses outside a rollout.

    ``config_file`` wins; without an ops database, the defaults; the new
    system runs the handed-over candidate when there is one; everything else
    runs the live config.
    """
    if config_file is not None:
        return ResolvedConfig(ParameterConfig.load(config_file), str(config_file))
    if ops is None:
        return ResolvedConfig(ParameterConfig(), "defaults")
    if system == "new":
        cand = candidate_config(ops)
        if cand is not None:
            info = candidate_info(ops) or {}
            return ResolvedConfig(cand, f"rollout candidate ({info.get('path', '?')})")
    label = "live config" if live_config_info(ops) else "defaults (no live config promoted yet)"
    return ResolvedConfig(live_config(ops), label)
