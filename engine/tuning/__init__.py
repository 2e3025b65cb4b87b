"""Parameter tuning: search space and samplers, study specs, stored studies and trials, the resumable
runner, hold-out validation, and a finished study's winner, report and handoff to rollout."""

# re-exported: what the CLI and the console use; the modules hold the rest
from engine.tuning.objective import Rewards
from engine.tuning.outputs import handoff, render_report, study_dir, summarize, winner_config, write_outputs
from engine.tuning.runner import (
    JOB_KIND,
    Progress,
    StudyRunner,
    cancel_study,
    resume_study,
    run_tuning_job,
    start_study,
    study_state,
    submit_study,
)
from engine.tuning.samplers import METHODS
from engine.tuning.space import DEFAULT_TUNED, parse_param_names
from engine.tuning.spec import (
    DEFAULT_CATALOGUE_SEED,
    DEFAULT_WORLD_SEED,
    EntitySpec,
    EvidenceRef,
    LabelsRef,
    StudySpec,
    evidence_ref,
    file_entity_spec,
    labels_ref,
)
from engine.tuning.store import (
    Study,
    Trial,
    UnknownStudy,
    create_study,
    current_config,
    get_study,
    latest_study,
    list_studies,
    list_trials,
)
from engine.tuning.validate import Validation, validate_config

__all__ = [
    "DEFAULT_CATALOGUE_SEED",
    "DEFAULT_TUNED",
    "DEFAULT_WORLD_SEED",
    "JOB_KIND",
    "METHODS",
    "EntitySpec",
    "EvidenceRef",
    "LabelsRef",
    "Progress",
    "Rewards",
    "Study",
    "StudyRunner",
    "StudySpec",
    "Trial",
    "UnknownStudy",
    "Validation",
    "cancel_study",
    "create_study",
    "current_config",
    "evidence_ref",
    "file_entity_spec",
    "get_study",
    "handoff",
    "labels_ref",
    "latest_study",
    "list_studies",
    "list_trials",
    "parse_param_names",
    "render_report",
    "resume_study",
    "run_tuning_job",
    "start_study",
    "study_dir",
    "study_state",
    "submit_study",
    "summarize",
    "validate_config",
    "winner_config",
    "write_outputs",
]
