"""Which ParameterConfig runs where: the live config and the handed-over candidate.

Two settings in the ops database decide it. The **live** config is what
production runs (the old system in a rollout, every entity no rollout has
exposed); it is the last candidate a rollout promoted, or the defaults. The
**candidate** is what a person (or a tuning study's handoff) gave the next
rollout to try. Every area that needs to know which config applies (rollout,
tuning's trial 0, the CLI's discover/compare, the entity view) asks here, so
the answer is the same everywhere. See the README's "Staged rollout" section.

Past live configs are kept in the audit log: every ``set_live_config`` writes
one ``rollout.live_config`` row in the promotion's own transaction, with the
parameters, the run and the hash it replaced, so the history is append-only
and can never disagree with what was live (``live_config_history``). Rows of
data dirs from before the parameters were recorded still list (hash, run,
actor, time). Saved ParameterConfig files live in ``<data dir>/configs``
(``saved_configs``), where tuning's handoff writes them.

``ops`` is any object with the OpsDB settings and audit calls
(``get_setting``, ``set_setting``, ``transaction``, ``audit``, and
``list_audit`` for the history); this module imports no store. The two
functions that change a setting take an ``engine.core.access.Actor``, which
the caller has authorized against the ops DB's role map
(``engine.store.access.authorize``, a layer above this one); they check it
again here (``engine.core.access.check``), so a plain name or a role too low
is refused before anything is read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.core.access import Actor, check
from engine.core.errors import DiscoveryError
from engine.core.params import PARAMETER_SPECS, ParameterConfig
from engine.core.settings import Settings

#: settings_kv keys (names kept from the first release: existing data dirs keep their configs)
CANDIDATE_KEY = "rollout.candidate"
LIVE_CONFIG_KEY = "rollout.live_config"
#: the audit action written each time a config becomes live (the live-config history reads these rows)
LIVE_CONFIG_ACTION = "rollout.live_config"
#: past live configs listed at most (a promotion to production is rare: this is years of them)
HISTORY_LIMIT = 500
#: the folder of a data dir that holds saved ParameterConfig files (tuning's handoff writes there)
CONFIGS_FOLDER = "configs"
#: saved config files listed at most (a folder with more is listed by name up to this many)
SAVED_LIMIT = 200
#: how a time reads where configs are described (console and CLI), always UTC
WHEN_FORMAT = "%Y-%m-%d %H:%M"
#: a time, run or actor that is not known
UNKNOWN = "—"


class SettingsStore(Protocol):
    """The part of OpsDB this module uses."""

    def get_setting(self, key: str, default: Any = None) -> Any: ...

    def set_setting(self, key: str, value: Any, *, db: Any = None) -> None: ...

    def transaction(self) -> Any: ...

    def audit(self, actor: Any, action: str, target: str, detail: Any = None, *, db: Any = None) -> Any: ...


class AuditedSettingsStore(SettingsStore, Protocol):
    """SettingsStore that can also read the audit log back (for the live-config history)."""

    def list_audit(
        self, limit: int = 100, *, actor: str | None = None, action: str | None = None, target: str | None = None
    ) -> list[dict[str, Any]]: ...


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


def value_text(value: float | int) -> str:
    """A parameter value as a config file would hold it: 20, 0.06, 86400, 1000000 (no exponent, no commas)."""
    return str(value) if isinstance(value, int) else f"{value:.10g}"


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


def set_live_config(
    ops: SettingsStore, db: Any, cfg: ParameterConfig, *, run_id: int, actor: Actor, at: float, how: str | None = None
) -> None:
    """Make ``cfg`` the live config inside the caller's transaction ``db`` (approver; audited).

    ``actor`` is the one the caller authorized (a promotion's approver, or the worker acting on a run
    someone started); it is checked for ``config.live`` before anything is read.

    The audit row carries the parameters, the time and the hash of the config
    it replaces, so ``live_config_history`` can list every past live config.
    The caller's transaction holds the write lock (BEGIN IMMEDIATE), so the
    live config read here is the one being replaced. ``how``: how it became
    live when that is not a promotion by ``run_id`` (a guardrail's revert says
    so), shown by ``live_origin``.
    """
    who = check(actor, "config.live")
    previous = live_config_info(ops)
    replaced = str(previous.get("hash", "")) if previous else ParameterConfig().hash()
    info = {"hash": cfg.hash(), "run_id": run_id, "actor": str(who), "at": at, "params": cfg.to_dict()}
    if how:
        info["how"] = how
    ops.set_setting(LIVE_CONFIG_KEY, info, db=db)
    detail = {"run_id": run_id, "at": at, "params": cfg.to_dict(), "replaced": replaced or None}
    if how:
        detail["how"] = how
    ops.audit(who, LIVE_CONFIG_ACTION, cfg.hash(), detail, db=db)


def set_candidate(ops: SettingsStore, path: str | Path, actor: Actor, source: str = "file") -> dict[str, Any]:
    """Hand a candidate ParameterConfig file to the rollout (approver; audited). Returns what was stored.

    The file is validated and its values are stored (a later edit or removal
    of the file does not change the candidate). The next rollout started
    without ``config_file`` runs the new system with it.
    """
    who = check(actor, "rollout.candidate")
    cfg = ParameterConfig.load(path)
    info = {
        "path": str(Path(path)),
        "hash": cfg.hash(),
        "source": str(source),
        "actor": str(who),
        "at": time.time(),
        "params": cfg.to_dict(),
    }
    with ops.transaction() as db:
        ops.set_setting(CANDIDATE_KEY, info, db=db)
        ops.audit(who, "rollout.candidate", cfg.hash(), {"path": info["path"], "source": info["source"]}, db=db)
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


# --------------------------------------------------------------------------- what was live, what is saved


@dataclass(frozen=True)
class LiveConfigEntry:
    """One time a config became live: what it was, who made it live, when, and what it replaced.

    ``config`` is None only for a promotion recorded before the parameters were
    kept (an older data dir) whose values are not the current live config's.
    ``replaced`` is the hash of the config it replaced (the defaults' hash for
    the first promotion), or None when that is unknown.
    """

    hash: str
    config: ParameterConfig | None
    run_id: int | None
    actor: str
    at: float | None
    replaced: str | None
    current: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "params": self.config.to_dict() if self.config is not None else None,
            "run_id": self.run_id,
            "actor": self.actor,
            "at": self.at,
            "replaced": self.replaced,
            "current": self.current,
        }


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _params_config(params: Any, source: str) -> ParameterConfig | None:
    """The config stored in a history row, or None when it is absent or no longer valid."""
    if not isinstance(params, dict):
        return None
    try:
        return ParameterConfig.from_dict(params, source=source)
    except DiscoveryError:
        return None


def live_config_history(ops: AuditedSettingsStore, limit: int = HISTORY_LIMIT) -> list[LiveConfigEntry]:
    """Every config that became live, newest first (the first entry is the live config now).

    Read from the audit rows ``set_live_config`` writes. A data dir from before
    those rows carried parameters still lists its promotions (hash, run,
    actor, time); the newest gets its parameters from the live config setting,
    and a live config with no audit row at all is listed from that setting
    alone. Nothing promoted yet: an empty list (the defaults are live).
    """
    live = ops.get_setting(LIVE_CONFIG_KEY) or None
    rows = ops.list_audit(limit, action=LIVE_CONFIG_ACTION)
    entries: list[dict[str, Any]] = []
    for row in rows:
        stored = row.get("details")
        detail: dict[str, Any] = stored if isinstance(stored, dict) else {}
        at = _stored_time(detail.get("at"))
        entries.append(
            {
                "hash": str(row.get("target", "")),
                "config": _params_config(detail.get("params"), f"live config of audit row {row.get('id')}"),
                "run_id": _as_int(detail.get("run_id")),
                "actor": str(row.get("actor", "")),
                "at": at if at is not None else _stored_time(row.get("at")),
                "replaced": detail.get("replaced") if isinstance(detail.get("replaced"), str) else None,
            }
        )
    if isinstance(live, dict) and live.get("hash"):
        live_cfg = _params_config(live.get("params"), "live config (settings_kv rollout.live_config)")
        if not entries or entries[0]["hash"] != live["hash"]:
            # the setting is newer than any audit row this function can read: list it first
            entries.insert(
                0,
                {
                    "hash": str(live["hash"]),
                    "config": live_cfg,
                    "run_id": _as_int(live.get("run_id")),
                    "actor": str(live.get("actor", "")),
                    "at": _stored_time(live.get("at")),
                    "replaced": None,
                },
            )
        elif entries[0]["config"] is None:
            entries[0]["config"] = live_cfg
    # older rows: what each replaced is the one before it; the oldest of a complete log replaced the defaults
    for newer, older in zip(entries, entries[1:]):
        if newer["replaced"] is None:
            newer["replaced"] = older["hash"]
    if rows and entries[-1]["replaced"] is None and len(rows) < limit:
        entries[-1]["replaced"] = ParameterConfig().hash()
    # a config listed without values gets them from any other entry of the same hash
    by_hash = {e["hash"]: e["config"] for e in entries if e["config"] is not None}
    return [
        LiveConfigEntry(
            hash=e["hash"],
            config=e["config"] if e["config"] is not None else by_hash.get(e["hash"]),
            run_id=e["run_id"],
            actor=e["actor"],
            at=e["at"],
            replaced=e["replaced"],
            current=i == 0,
        )
        for i, e in enumerate(entries[:limit])
    ]


@dataclass(frozen=True)
class SavedConfig:
    """One JSON file in ``<data dir>/configs``: its config and hash, or the one-line reason it is not one."""

    path: Path
    config: ParameterConfig | None
    problem: str | None
    modified: float | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def hash(self) -> str | None:
        return self.config.hash() if self.config is not None else None

    @property
    def valid(self) -> bool:
        return self.config is not None


def configs_dir(settings: Settings) -> Path:
    """Where saved ParameterConfig files live: ``<data dir>/configs``."""
    return Path(settings.data_dir) / CONFIGS_FOLDER


def _problem_line(exc: DiscoveryError, path: Path) -> str:
    """The error's one line without the "parameter file <path>: " prefix the listing already shows."""
    text = " ".join(str(exc).split())
    prefix = f"parameter file {path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def saved_configs(settings: Settings, limit: int = SAVED_LIMIT) -> list[SavedConfig]:
    """The ``*.json`` files of ``<data dir>/configs`` by name, each loaded and validated.

    A file that is not a valid ParameterConfig (bad JSON, an unknown or
    out-of-range parameter, unreadable) is listed with its one-line problem;
    nothing here raises for a file's content. No folder: an empty list.
    """
    folder = configs_dir(settings)
    if not folder.is_dir():
        return []
    out: list[SavedConfig] = []
    for path in sorted(folder.glob("*.json"))[:limit]:
        try:
            modified: float | None = path.stat().st_mtime
        except OSError:
            modified = None
        try:
            out.append(SavedConfig(path, ParameterConfig.load(path), None, modified))
        except DiscoveryError as exc:
            out.append(SavedConfig(path, None, _problem_line(exc, path), modified))
    return out


def when(at: float | None) -> str:
    """A stored time as "YYYY-MM-DD HH:MM UTC", or "—" when it is unknown."""
    if at is None:
        return UNKNOWN
    return time.strftime(WHEN_FORMAT, time.gmtime(at)) + " UTC"


def _stored_time(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def config_label(config_hash: str | None) -> str:
    """A config's hash, or "defaults (<hash>)" when it is the defaults' hash; "—" when unknown."""
    if not config_hash:
        return UNKNOWN
    return f"defaults ({config_hash})" if config_hash == ParameterConfig().hash() else config_hash


def live_origin(info: Mapping[str, Any] | None) -> str:
    """Where the live config came from (``live_config_info``), in words: the defaults, or "promoted by
    run 3 · by console:alice · 2026-12-01 21:54 UTC". Plain text: a page escapes it for Markdown."""
    if not info:
        return "the defaults: no rollout has made a config live yet"
    run_id = info.get("run_id")
    parts = [f"promoted by run {run_id}" if run_id is not None else "promoted by a rollout"]
    if isinstance(info.get("how"), str) and info["how"]:
        parts = [str(info["how"])]
    if info.get("actor"):
        parts.append(f"by {info['actor']}")
    at = _stored_time(info.get("at"))
    parts.append(when(at) if at is not None else "time unknown")
    return " · ".join(parts)


def candidate_origin(info: Mapping[str, Any]) -> str:
    """Who handed the candidate over (``candidate_info``), from where and when, in words. Plain text."""
    source = str(info.get("source") or "file")
    actor = str(info.get("actor") or "someone")
    at = _stored_time(info.get("at"))
    stamp = when(at) if at is not None else "an unknown date"
    path = str(info.get("path") or "")
    return f"handed over by {actor} on {stamp} · source: {source}" + (f" · file {path}" if path else "")


def describe_vs_live(config: ParameterConfig, live: ParameterConfig) -> str:
    """How ``config`` relates to the live config, in words: "identical to the live config" or
    "1 parameter differs from the live config" / "3 parameters differ from the live config"."""
    n = len(config_diff(live, config))
    if n == 0:
        return "identical to the live config"
    return f"{n} parameter differs from the live config" if n == 1 else f"{n} parameters differ from the live config"
