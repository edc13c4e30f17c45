"""Run records on disk: what a run computed (:class:`RunArtifacts`, in memory), how the driver
writes it, how it is read back (:class:`RunResult`), and the failure notes of a grid.

A record is ``results/<run_id>/`` (``$COVID_LIB_RESULTS`` overrides the folder):

- ``spec.json``: the spec, resolved profile and pipeline, git state (of the driver), data
  version, environment, ``pretrain_run`` (fine-tunes), ``did_not_learn``, ``monitor``, ``best_value``;
- ``history.csv``: the learning curve, one row per epoch (train and validation loss and AUC);
- ``scores.csv`` / ``val_scores.csv``: per-image scores (fine-tunes only);
- ``metrics.json``: metrics per test set, ``test_sets`` (``n_expected``, ``n_scored``,
  ``rejected``: image id and the chain's reason), ``did_not_learn``, ``monitor``, ``best_value``;
- ``rejections.csv``: every image the pre-processing chain rejected, per set and split;
- ``timings.json``: seconds per stage, training images per second and the runtime (device,
  precision, threads).

- ``lineage.json`` (a run that starts from a parent's checkpoint): the parent's run id, the sha256
  of the checkpoint it started from and whether that checkpoint reproduced the parent's record.

The checkpoint goes to ``<storage>/<run_id>/model.pt``; storage defaults to the git-ignored cache
(``cache_dir("runs")``). A committed record travels with the repository, its checkpoint does not:
on a fresh clone a record is complete while its checkpoint is not cached. Beside the checkpoint,
``checkpoint.json`` notes where it came from and whether it reproduces its record
(:mod:`covid_lib.runs.fidelity`); one that does not is refused as the recorded model
(:class:`~covid_lib.runs.fidelity.CheckpointMismatch`) unless ``allow_mismatch=True``.

Read a record through :class:`Record` (status, metrics, scores, history, rejections, cached
checkpoint): no other module needs to know the file layout above.

A failed run leaves a note in the cache, never in the records' folder:
``cache_dir("failures")/<run_id>.json`` (reason, traceback) and ``<run_id>.log`` (the full
traceback, for reading); :func:`write_artifacts` removes both once the run succeeds.

Example:
    >>> Record.of("covid-CORDA-resnet18-scratch-smoke-s0-0000000000", results="/nonexistent").status
    'missing'
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from covid_lib.evaluate import format_metrics
from covid_lib.metrics import COLLAPSE_MIN_SPREAD, COLLAPSE_THRESHOLD, collapse_status
from covid_lib.models import create_model
from covid_lib.models.heads import with_small_head
from covid_lib.paths import cache_dir
from covid_lib.provenance import git_state
from covid_lib.runs.fidelity import (CHECKPOINT_NOTE, DIFFERS, TRAINED, UNCHECKED, CheckpointMismatch,
                                     checkpoint_digest, differs)
from covid_lib.runs.spec import RunSpec, results_dir

#: Where failure notes go: ``cache_dir(FAILURES_CACHE)/<run_id>.json`` and ``.log``.
FAILURES_CACHE = "failures"
#: Checkpoint entries: plain types only, so that ``torch.load(..., weights_only=True)`` reads them.
CHECKPOINT_KEYS = ("arch", "num_classes", "mean", "std", "input_size", "resize_size", "run_id")


@dataclass
class RunArtifacts:
    """What computing a run produces, before anything is written: the record's files (DataFrames
    become CSV, dicts JSON) and the checkpoint as bytes. Built on any executor, written by the driver."""

    spec: RunSpec
    files: dict[str, object]
    checkpoint: bytes

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def did_not_learn(self) -> bool:
        return bool(self.files["metrics.json"].get("did_not_learn", False))


@dataclass
class RunResult:
    """A finished run as read from its record."""

    spec: RunSpec
    run_id: str
    path: Path
    metrics: pd.DataFrame
    scores: pd.DataFrame
    history: pd.DataFrame
    timings: dict
    reused: bool = False
    record: dict = field(default_factory=dict)
    storage: Path | None = None

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.run_id, self.storage)

    @property
    def did_not_learn(self) -> bool:
        """Best validation AUC under 0.6 (:data:`covid_lib.train.DID_NOT_LEARN_AUC`)."""
        return bool(self.record.get("did_not_learn", False))

    @property
    def rejections(self) -> pd.DataFrame:
        """Images the chain rejected, per set and split (``rejections.csv``)."""
        return pd.read_csv(self.path / "rejections.csv", dtype=str, keep_default_na=False)


# ------------------------------------------------------------------------------------ checkpoints
def checkpoint_dir(storage: str | os.PathLike | None = None) -> Path:
    """Where checkpoints live: ``storage`` when given, else the cache's ``runs`` folder."""
    return Path(storage) if storage is not None else cache_dir("runs")


def checkpoint_path(run_id: str, storage: str | os.PathLike | None = None) -> Path:
    """Where a run's weights live."""
    return checkpoint_dir(storage) / run_id / "model.pt"


def resume_path(run_id: str, storage: str | os.PathLike | None = None) -> Path:
    """Where a run being trained keeps its last finished epoch (:func:`covid_lib.train.fit`'s
    resume file), next to its weights; deleted once the run is written."""
    return checkpoint_dir(storage) / run_id / "resume.pt"


def checkpoint_bytes(model: torch.nn.Module, spec: RunSpec, num_classes: int, mean: float, std: float) -> bytes:
    """A checkpoint (CPU state dict and plain metadata) serialised to bytes."""
    buf = io.BytesIO()
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "arch": spec.arch,
                "num_classes": int(num_classes), "mean": float(mean), "std": float(std),
                "input_size": int(spec.input_size), "resize_size": int(spec.resize_size), "run_id": spec.run_id,
                **({"head": "small"} if getattr(spec, "freeze", None) else {})}, buf)
    return buf.getvalue()


def model_from_checkpoint(data: bytes | str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The model of a checkpoint (bytes or a path; eval mode) and its metadata."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    ckpt = torch.load(source, map_location=device, weights_only=True)
    model = create_model(ckpt["arch"], num_classes=ckpt["num_classes"])
    if ckpt.get("head") == "small":  # Ben Ahmed et al.'s small head (covid_lib.models.heads)

        model = with_small_head(model, ckpt["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), {k: ckpt[k] for k in CHECKPOINT_KEYS}


def checkpoint_note(run_id: str, storage: str | os.PathLike | None = None) -> dict:
    """The note beside a cached checkpoint (:mod:`covid_lib.runs.fidelity`); {} when there is none
    (no checkpoint, or one cached before notes were written)."""
    path = checkpoint_path(run_id, storage).with_name(CHECKPOINT_NOTE)
    return json.loads(path.read_text()) if path.is_file() else {}


def write_checkpoint_note(run_id: str, storage: str | os.PathLike | None, note: dict, *,
                          digest: str | None = None) -> dict:
    """Write the note beside a run's cached checkpoint (``run_id``, ``sha256`` and the time join
    ``note``, whose ``origin`` is one of :data:`~covid_lib.runs.fidelity.ORIGINS`); returns it."""
    path = checkpoint_path(run_id, storage)
    full = {"run_id": run_id, "origin": UNCHECKED, "matches_record": None, **note,
            "sha256": digest or checkpoint_digest(path.read_bytes()), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    text = json.dumps(full, indent=2, sort_keys=True, default=str) + "\n"
    _write_atomic(path.with_name(CHECKPOINT_NOTE), text.encode())
    return full


def _served(run_id: str, storage, allow_mismatch: bool) -> Path:
    """A cached checkpoint's path, refused (:class:`CheckpointMismatch`) when its note says it is not
    its record's model, unless ``allow_mismatch``."""
    path = checkpoint_path(run_id, storage)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint for run {run_id} at {path}; re-run it with run(spec, force=True)")
    note = checkpoint_note(run_id, storage)
    if differs(note) and not allow_mismatch:
        raise CheckpointMismatch(note, path.parent)
    return path


def read_checkpoint(run_id: str, storage: str | os.PathLike | None = None, *, allow_mismatch: bool = False) -> bytes:
    """A finished run's checkpoint bytes; one that differs from its record only with ``allow_mismatch``."""
    return _served(run_id, storage, allow_mismatch).read_bytes()


def load_model(spec: RunSpec, device: str = "cpu", storage: str | os.PathLike | None = None, *,
               allow_mismatch: bool = False) -> tuple[torch.nn.Module, dict]:
    """The trained model of a run (eval mode) and its checkpoint metadata (mean, std, sizes).

    Raises:
        CheckpointMismatch: the cached checkpoint was retrained here and does not reproduce the
            record (unless ``allow_mismatch``).
    """
    return model_from_checkpoint(_served(spec.run_id, storage, allow_mismatch), device)


# ---------------------------------------------------------------------------------------- records
def is_finished(spec: RunSpec) -> bool:
    """Whether ``spec`` (resolved) has a complete record under :func:`results_dir`, whether or
    not its checkpoint is cached here (:attr:`Record.checkpoint`): a committed record is finished
    on a fresh clone too, and is never recomputed without ``force``."""
    return Record.of(spec).recorded


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_checkpoint(artifacts: RunArtifacts, storage: str | os.PathLike | None = None, *,
                     note: dict | None = None, finished: bool = True) -> Path:
    """Write only a computed run's checkpoint (to ``storage`` or the cache), leaving its record
    alone: how a committed record whose checkpoint is not cached here gets its weights back. Its
    note (:func:`write_checkpoint_note`) says where it came from (default: written unchecked).
    ``finished``: nothing more is written for the run, so its resume file goes."""
    ckpt = checkpoint_path(artifacts.run_id, storage)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.with_name(CHECKPOINT_NOTE).unlink(missing_ok=True)  # never a stale note beside new weights
    _write_atomic(ckpt, artifacts.checkpoint)
    write_checkpoint_note(artifacts.run_id, storage, note or {}, digest=checkpoint_digest(artifacts.checkpoint))
    if finished:
        resume_path(artifacts.run_id, storage).unlink(missing_ok=True)
    return ckpt


def _with_parent_note(lineage: dict, storage) -> dict:
    """A run's lineage (parent run, sha256 of the checkpoint it started from) with what the
    parent's checkpoint note says, when the note is of those very bytes."""
    note = checkpoint_note(lineage["parent_run"], storage)
    same = bool(note) and note.get("sha256") == lineage.get("parent_checkpoint_sha256")
    return {**lineage, "parent_checkpoint_origin": note.get("origin") if same else "not noted here",
            "parent_matches_record": note.get("matches_record") if same else None,
            "parent_max_abs_diff": note.get("max_abs_diff") if same else None}


def write_artifacts(artifacts: RunArtifacts, storage: str | os.PathLike | None = None) -> Path:
    """Write a computed run on the driver: checkpoint first (noted as its record's model), then the
    files, ``metrics.json`` last (its presence marks the run finished); the driver's git state joins
    ``spec.json``, the parent checkpoint's note joins ``lineage.json``. The run's resume file is
    deleted once the record is complete."""
    scores = artifacts.files.get("scores.csv")
    write_checkpoint(artifacts, storage, note={"origin": TRAINED, "matches_record": True, "max_abs_diff": 0.0,
                                               "images": len(scores) if isinstance(scores, pd.DataFrame) else 0},
                     finished=False)
    path = results_dir() / artifacts.run_id
    path.mkdir(parents=True, exist_ok=True)
    files = dict(artifacts.files)
    files["spec.json"] = {**files["spec.json"], "git": git_state()}
    if "lineage.json" in files:
        files["lineage.json"] = _with_parent_note(files["lineage.json"], storage)
    for name in sorted(files, key=lambda n: n == "metrics.json"):
        obj = files[name]
        if isinstance(obj, pd.DataFrame):
            _write_atomic(path / name, obj.to_csv(index=False).encode())
        else:
            _write_atomic(path / name, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())
    clear_failure(artifacts.run_id)
    resume_path(artifacts.run_id, storage).unlink(missing_ok=True)
    return path


def load_result(spec: RunSpec, *, reused: bool = True, storage: str | os.PathLike | None = None,
                results: str | os.PathLike | None = None) -> RunResult:
    """Read a finished run's record (under ``results``, default :func:`results_dir`)."""
    path = (Path(results) if results is not None else results_dir()) / spec.run_id
    if not (path / "metrics.json").is_file():
        raise FileNotFoundError(f"run {spec.run_id} has no record under {path}; train it with run(spec)")
    metrics = json.loads((path / "metrics.json").read_text())
    scores = pd.read_csv(path / "scores.csv", dtype={"image_id": str, "patient_id": str, "group_id": str}) \
        if (path / "scores.csv").is_file() else pd.DataFrame()
    return RunResult(spec=spec, run_id=spec.run_id, path=path, metrics=pd.DataFrame(metrics["table"]),
                     scores=scores, history=pd.read_csv(path / "history.csv"),
                     timings=json.loads((path / "timings.json").read_text()), reused=reused,
                     record=json.loads((path / "spec.json").read_text()),
                     storage=Path(storage) if storage is not None else None)


def summary_table(result: RunResult, digits: int = 2) -> pd.DataFrame:
    """The run's metrics as ``"0.91 [0.80, 0.96]"`` cells, one row per test set and threshold,
    with ``n_expected`` (before the chain) and ``did_not_learn`` columns."""
    table = format_metrics(result.metrics, digits) if len(result.metrics) else pd.DataFrame(columns=["test_set"])
    sets = json.loads((result.path / "metrics.json").read_text()).get("test_sets", {})
    table.insert(table.columns.get_loc("n") + 1 if "n" in table else 1, "n_expected",
                 [sets.get(t, {}).get("n_expected") for t in table["test_set"]])
    table["did_not_learn"] = result.did_not_learn
    return table


# --------------------------------------------------------------------------------------- failures
def failures_dir() -> Path:
    """Where failure notes go: the cache's ``failures`` folder (created when a note is written)."""
    return cache_dir() / FAILURES_CACHE


def failure_path(run_id: str) -> Path:
    """A run's failure note (JSON) in the cache; the full traceback is beside it as ``.log``."""
    return failures_dir() / f"{run_id}.json"


def write_failure(spec: RunSpec, error: str, *, reason: str | None = None) -> Path:
    """Note a failed run in the cache (never in the records' folder): ``<run_id>.json`` (the
    one-line reason and the traceback) and ``<run_id>.log`` (the traceback); returns the log's path."""
    note = {"run_id": spec.run_id, "spec": asdict(spec), "reason": reason or _last_line(error),
            "traceback": error, "failed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = failure_path(spec.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, (json.dumps(note, indent=2, default=str) + "\n").encode())
    log = path.with_suffix(".log")
    _write_atomic(log, f"run {spec.run_id} failed: {note['reason']}\n\n{error}".encode())
    return log


def _last_line(error: str) -> str:
    lines = error.strip().splitlines()
    return lines[-1] if lines else "unknown error"


def read_failure(run_id: str) -> dict | None:
    """A run's failure note, or None."""
    path = failure_path(run_id)
    return json.loads(path.read_text()) if path.is_file() else None


def clear_failure(run_id: str) -> None:
    """Remove a run's failure note (done by :func:`write_artifacts` when the run succeeds)."""
    path = failure_path(run_id)
    path.unlink(missing_ok=True)
    path.with_suffix(".log").unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ the reader
DONE = "done"
DID_NOT_LEARN = "did not learn"
COLLAPSED = "collapsed"
FAILED = "failed"
NO_CHECKPOINT = "recorded (no checkpoint here)"
MISSING = "missing"
#: Every :attr:`Record.status`, in the order tables count them (``DIFFERS``: the checkpoint cached
#: here is a retraining that does not reproduce the record, :mod:`covid_lib.runs.fidelity`).
STATUSES = (DONE, DID_NOT_LEARN, COLLAPSED, NO_CHECKPOINT, DIFFERS, FAILED, MISSING)
#: The statuses of a complete record whose numbers can be read (``recorded (no checkpoint here)``
#: is one too, but only arises when a checkpoint is asked for: see :attr:`Record.status`).
LEARNED = (DONE, DID_NOT_LEARN, COLLAPSED)
_SCORE_DTYPES = {"image_id": str, "patient_id": str, "group_id": str}


def _collapse_reason(record: "Record") -> str | None:
    """Why a finished COVID run that learned on validation collapsed on its own test set
    (:func:`covid_lib.metrics.collapse_status`: every score on one side of the threshold, or no
    spread), else None. Pre-trainings and runs without scores on their own test set: None."""
    spec = record.info.get("spec", {})
    if spec.get("task") != "covid":
        return None
    own = record.scores(spec.get("composition"))
    if "score" not in own or not len(own):
        return None
    return collapse_status(own["score"].to_numpy(), threshold=COLLAPSE_THRESHOLD, min_spread=COLLAPSE_MIN_SPREAD)


@dataclass(frozen=True)
class Record:
    """One run's record, read back: the only reader of the files listed in this module's docstring.

    Build it with :meth:`Record.of` from a :class:`RunSpec` or a run id. Nothing is read until a
    property asks, and nothing is cached: a record that a run writes meanwhile is seen at once.

    Attributes:
        run_id: the run id (the record's folder name).
        spec: the spec, when the record was built from one (else None).
        results: the records' folder (default :func:`results_dir`, i.e. ``$COVID_LIB_RESULTS``).
        storage: the checkpoints' folder (default: the cache's ``runs`` folder).
        need_checkpoint: whether :attr:`status` asks for the checkpoint too (default: for
            pre-trainings, which other runs start from).
    """

    run_id: str
    spec: RunSpec | None = None
    results: Path | None = None
    storage: Path | None = None
    need_checkpoint: bool = False

    @classmethod
    def of(cls, run: RunSpec | str, *, results: str | os.PathLike | None = None,
           storage: str | os.PathLike | None = None, need_checkpoint: bool | None = None) -> "Record":
        """The record of ``run`` (a resolved :class:`RunSpec` or a run id) under ``results``."""
        spec = run if isinstance(run, RunSpec) else None
        run_id = run.run_id if isinstance(run, RunSpec) else str(run)
        if need_checkpoint is None:
            need_checkpoint = (spec.task if spec is not None else run_id.split("-", 1)[0]) == "pretrain"
        return cls(run_id, spec, Path(results) if results is not None else None,
                   Path(storage) if storage is not None else None, bool(need_checkpoint))

    # ------------------------------------------------------------------------ where and whether
    @property
    def path(self) -> Path:
        """The record's folder, ``<results>/<run_id>`` (it may not exist)."""
        return (self.results if self.results is not None else results_dir()) / self.run_id

    @property
    def recorded(self) -> bool:
        """Whether the record is complete (``metrics.json``, written last, is there)."""
        return (self.path / "metrics.json").is_file()

    @property
    def checkpoint(self) -> Path | None:
        """The cached checkpoint's path, or None when it is not in this machine's storage."""
        path = checkpoint_path(self.run_id, self.storage)
        return path if path.is_file() else None

    @property
    def checkpoint_note(self) -> dict:
        """The note beside the cached checkpoint (origin, sha256, whether it matches this record);
        {} without a checkpoint or a note."""
        return checkpoint_note(self.run_id, self.storage) if self.checkpoint is not None else {}

    @property
    def checkpoint_differs(self) -> bool:
        """Whether the cached checkpoint was retrained here and does not reproduce this record."""
        return differs(self.checkpoint_note)

    @property
    def failure(self) -> dict | None:
        """The failure note of the run's last failed attempt (:func:`write_failure`), or None."""
        return read_failure(self.run_id)

    @property
    def outcome(self) -> str:
        """What the record says, whatever this machine's cache holds: ``done``, ``did not
        learn`` (best validation AUC under 0.6), ``collapsed`` (:func:`_collapse_reason`),
        ``failed`` (no record, a failure note) or ``missing``."""
        if self.recorded:
            if self.metrics.get("did_not_learn"):
                return DID_NOT_LEARN
            return COLLAPSED if _collapse_reason(self) is not None else DONE
        return FAILED if self.failure is not None else MISSING

    @property
    def status(self) -> str:
        """One of :data:`STATUSES`: :attr:`outcome`, except, for a complete record whose checkpoint
        is asked for (``need_checkpoint``), ``recorded (no checkpoint here)`` when it is not cached
        here (a committed pre-training on a fresh clone: not missing, and never retrained without
        force) and ``retrained here, differs from record`` when the cached one is a retraining
        that does not reproduce the record (:attr:`checkpoint_differs`)."""
        outcome = self.outcome
        if outcome in LEARNED and self.need_checkpoint:
            if self.checkpoint is None:
                return NO_CHECKPOINT
            if self.checkpoint_differs:
                return DIFFERS
        return outcome

    @property
    def note(self) -> str:
        """A line on the status: why it did not learn or collapsed, the failure's reason, or ''."""
        outcome = self.outcome
        if outcome == DID_NOT_LEARN:
            m = self.metrics
            best = m.get("best_value")
            return f"best {m.get('monitor')} {best:.3f}" if isinstance(best, (int, float)) else "did not learn"
        if outcome == COLLAPSED:
            return _collapse_reason(self) or ""
        if outcome == FAILED:
            return self.failure["reason"]
        if self.need_checkpoint and self.checkpoint_differs:
            note = self.checkpoint_note
            return f"checkpoint: max |Δ score| {note.get('max_abs_diff'):.2g} on {note.get('images')} test images"
        return ""

    # ------------------------------------------------------------------------------- contents
    def _json(self, name: str) -> dict:
        path = self.path / name
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def metrics(self) -> dict:
        """``metrics.json`` (``table``, ``test_sets``, ``did_not_learn``, ``best_value``...); {} when absent."""
        return self._json("metrics.json")

    @property
    def info(self) -> dict:
        """``spec.json``: the spec, profile, pipeline, git state, environment...; {} when absent."""
        return self._json("spec.json")

    @property
    def timings(self) -> dict:
        """``timings.json``: seconds per stage, images per second, runtime; {} when absent."""
        return self._json("timings.json")

    @property
    def did_not_learn(self) -> bool:
        return bool(self.metrics.get("did_not_learn", False))

    @property
    def table(self) -> pd.DataFrame:
        """The metrics table (one row per test set and threshold rule; empty for pre-trainings)."""
        return pd.DataFrame(self.metrics.get("table", []))

    def scores(self, test_set: str | None = None) -> pd.DataFrame:
        """Per-image scores (``scores.csv``), of one test set when given; empty when not recorded."""
        path = self.path / "scores.csv"
        if not path.is_file():
            return pd.DataFrame()
        s = pd.read_csv(path, dtype=_SCORE_DTYPES)
        return s if test_set is None else s[s["test_set"] == test_set].reset_index(drop=True)

    @property
    def val_scores(self) -> pd.DataFrame:
        """Per-image scores on the validation set (``val_scores.csv``, at the selected epoch); empty
        when not recorded."""
        path = self.path / "val_scores.csv"
        return pd.read_csv(path, dtype=_SCORE_DTYPES) if path.is_file() else pd.DataFrame()

    @property
    def history(self) -> pd.DataFrame:
        """The learning curve (``history.csv``), one row per epoch; empty when not recorded."""
        path = self.path / "history.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    @property
    def rejections(self) -> pd.DataFrame:
        """Images the chain rejected, per set and split (``rejections.csv``); empty when not recorded."""
        path = self.path / "rejections.csv"
        return pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame()

    def result(self, *, reused: bool = True) -> "RunResult":
        """The record as a :class:`RunResult` (needs the spec)."""
        if self.spec is None:
            raise ValueError(f"Record.of({self.run_id!r}) has no spec: build it from the RunSpec")
        return load_result(self.spec, reused=reused, storage=self.storage, results=self.results)
