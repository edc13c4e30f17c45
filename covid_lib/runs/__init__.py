"""Run records: a frozen :class:`RunSpec` hashes to a run id; :func:`run` trains what is missing.

- :mod:`covid_lib.runs.spec`: :class:`RunSpec` and its run id;
- :mod:`covid_lib.runs.execution`: :func:`compute` (train and score, anywhere, nothing written)
  and :func:`run` (compute what is missing and write it, in this process);
- :mod:`covid_lib.runs.records`: the record files, checkpoints and failure notes, and
  :class:`Record`, the one reader of a record (status, metrics, scores, history, rejections,
  cached checkpoint);
- :mod:`covid_lib.runs.fidelity`: whether a checkpoint reproduces its record (the note beside it,
  :class:`CheckpointMismatch` for a retraining that does not);
- :mod:`covid_lib.runs.source_runs`: seen and unseen sources (Ben Ahmed et al. 2021), a kind of
  run :func:`compute` hands source-split specs to.
- :mod:`covid_lib.runs.planted`: runs with a planted confounder (``RunSpec.plant``), registered
  with :func:`compute` on import.

A grid of runs on several executors is :mod:`covid_lib.grid`.
"""

from covid_lib.runs.execution import (checkpoint_matches_record, compute, machine_precision, rescore_record,
                                      restore_checkpoint, restore_checkpoints, restore_message, run, run_threads,
                                      write_restored)
from covid_lib.runs.fidelity import DIFFERS, SCORE_TOLERANCE, CheckpointMismatch, compare_scores
from covid_lib.runs import source_runs  # noqa: F401  registers the source-split runs with compute()
from covid_lib.runs.records import (DONE, LEARNED, STATUSES, Record, RunArtifacts, RunResult, checkpoint_dir,
                                    checkpoint_note, checkpoint_path, clear_failure, failure_path, failures_dir,
                                    is_finished, load_model, load_result, model_from_checkpoint, read_checkpoint,
                                    read_failure, resume_path, summary_table, write_artifacts, write_checkpoint,
                                    write_failure)
from covid_lib.runs.spec import (CLASSIFIERS, PRECISIONS, PRETRAIN_SOURCES, RESULTS_ENV_VAR, TASKS, RunSpec,
                                 results_dir)
from covid_lib.runs import planted as _planted  # noqa: E402,F401  (registers the planted fine-tune)

__all__ = [
    "checkpoint_matches_record", "compute", "machine_precision", "rescore_record", "restore_checkpoint",
    "restore_checkpoints", "restore_message", "run", "run_threads", "write_restored",
    "DIFFERS", "SCORE_TOLERANCE", "CheckpointMismatch", "compare_scores", "checkpoint_note",
    "DONE", "LEARNED", "STATUSES", "Record", "RunArtifacts", "RunResult", "checkpoint_dir", "checkpoint_path",
    "clear_failure", "failure_path", "failures_dir", "is_finished", "load_model", "load_result", "model_from_checkpoint",
    "read_checkpoint", "read_failure", "resume_path", "summary_table", "write_artifacts", "write_checkpoint",
    "write_failure",
    "CLASSIFIERS", "PRECISIONS", "PRETRAIN_SOURCES", "RESULTS_ENV_VAR", "TASKS", "RunSpec", "results_dir",
]
