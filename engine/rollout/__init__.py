"""Staged rollout of a candidate config (pilot -> limited -> production), paired against the live config.

This front re-exports the operator API; records, states, control, rollback, status and the worker live in modules."""

from engine.core.configs import (
    CANDIDATE_KEY,
    LIVE_CONFIG_KEY,
    candidate_config,
    candidate_info,
    live_config,
    live_config_info,
    set_candidate,
)
from engine.rollout.control import cancel, pause, promote, resume, skipped_stages, start_rollout
from engine.rollout.records import (
    ALL,
    JOB_KIND,
    DecisionRecord,
    PairedSummary,
    RollbackResult,
    RolloutError,
    RolloutStatus,
    RunInfo,
    StageStatus,
    UnknownRollout,
    assigned_systems,
    decision_records,
    discovery_run_id,
    list_runs,
    paired_outcomes,
    recompute_decision,
    stage_key,
)
from engine.rollout.rollback import rollback
from engine.rollout.states import EffectiveState, RunState, StageState
from engine.rollout.status import rollout_status, stage_report

__all__ = [
    "ALL",
    "JOB_KIND",
    "CANDIDATE_KEY",
    "LIVE_CONFIG_KEY",
    "RunState",
    "StageState",
    "EffectiveState",
    "RolloutError",
    "UnknownRollout",
    "RunInfo",
    "PairedSummary",
    "StageStatus",
    "DecisionRecord",
    "RolloutStatus",
    "RollbackResult",
    "start_rollout",
    "skipped_stages",
    "rollout_status",
    "list_runs",
    "decision_records",
    "paired_outcomes",
    "recompute_decision",
    "stage_report",
    "pause",
    "resume",
    "cancel",
    "promote",
    "rollback",
    "set_candidate",
    "candidate_info",
    "candidate_config",
    "live_config",
    "live_config_info",
    "assigned_systems",
    "stage_key",
    "discovery_run_id",
]
