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

The checkpoint goes to ``<storage>/<run_id>/model.pt``; storage defaults to the git-ignored cache
(``cache_dir("runs")``). A failed grid run leaves ``failed.json`` (removed once it succeeds).
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

from covid_lib.paths import cache_dir
from covid_lib.runs.spec import RunSpec, results_dir

FAILED_FILE = "failed.json"
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
    from covid_lib.models import create_model

    source = io.BytesIO(data) if isinstance(data, bytes) else data
    ckpt = torch.load(source, map_location=device, weights_only=True)
    model = create_model(ckpt["arch"], num_classes=ckpt["num_classes"])
    if ckpt.get("head") == "small":  # Ben Ahmed et al.'s small head (covid_lib.models.heads)
        from covid_lib.models.heads import with_small_head

        model = with_small_head(model, ckpt["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), {k: ckpt[k] for k in CHECKPOINT_KEYS}


def read_checkpoint(run_id: str, storage: str | os.PathLike | None = None) -> bytes:
    """A finished run's checkpoint bytes."""
    path = checkpoint_path(run_id, storage)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint for run {run_id} at {path}; re-run it with run(spec, force=True)")
    return path.read_bytes()


def load_model(spec: RunSpec, device: str = "cpu", storage: str | os.PathLike | None = None
               ) -> tuple[torch.nn.Module, dict]:
    """The trained model of a run (eval mode) and its checkpoint metadata (mean, std, sizes)."""
    path = checkpoint_path(spec.run_id, storage)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint for run {spec.run_id} at {path}; re-run it with run(spec, force=True)")
    return model_from_checkpoint(path, device)


# ---------------------------------------------------------------------------------------- records
def is_finished(spec: RunSpec, storage: str | os.PathLike | None = None) -> bool:
    """Whether ``spec`` (resolved) has a complete record (and, for pre-training, its checkpoint)."""
    done = (results_dir() / spec.run_id / "metrics.json").is_file()
    return done and (spec.task == "covid" or checkpoint_path(spec.run_id, storage).is_file())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_artifacts(artifacts: RunArtifacts, storage: str | os.PathLike | None = None) -> Path:
    """Write a computed run on the driver: checkpoint first, then the files, ``metrics.json`` last
    (its presence marks the run finished); the driver's git state joins ``spec.json``."""
    from covid_lib.provenance import git_state

    ckpt = checkpoint_path(artifacts.run_id, storage)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(ckpt, artifacts.checkpoint)
    path = results_dir() / artifacts.run_id
    path.mkdir(parents=True, exist_ok=True)
    files = dict(artifacts.files)
    files["spec.json"] = {**files["spec.json"], "git": git_state()}
    for name in sorted(files, key=lambda n: n == "metrics.json"):
        obj = files[name]
        if isinstance(obj, pd.DataFrame):
            _write_atomic(path / name, obj.to_csv(index=False).encode())
        else:
            _write_atomic(path / name, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())
    clear_failure(artifacts.run_id)
    return path


def load_result(spec: RunSpec, *, reused: bool = True, storage: str | os.PathLike | None = None) -> RunResult:
    """Read a finished run's record."""
    path = results_dir() / spec.run_id
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
    from covid_lib.evaluate import format_metrics

    table = format_metrics(result.metrics, digits) if len(result.metrics) else pd.DataFrame(columns=["test_set"])
    sets = json.loads((result.path / "metrics.json").read_text()).get("test_sets", {})
    table.insert(table.columns.get_loc("n") + 1 if "n" in table else 1, "n_expected",
                 [sets.get(t, {}).get("n_expected") for t in table["test_set"]])
    table["did_not_learn"] = result.did_not_learn
    return table


# --------------------------------------------------------------------------------------- failures
def write_failure(spec: RunSpec, error: str, *, reason: str | None = None) -> Path:
    """Note a failed run (``failed.json``: the error's traceback and a one-line reason)."""
    path = results_dir() / spec.run_id
    path.mkdir(parents=True, exist_ok=True)
    note = {"run_id": spec.run_id, "spec": asdict(spec), "reason": reason or error.strip().splitlines()[-1],
            "traceback": error, "failed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_atomic(path / FAILED_FILE, (json.dumps(note, indent=2, default=str) + "\n").encode())
    return path / FAILED_FILE


def read_failure(run_id: str) -> dict | None:
    """A run's failure note, or None."""
    path = results_dir() / run_id / FAILED_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def clear_failure(run_id: str) -> None:
    (results_dir() / run_id / FAILED_FILE).unlink(missing_ok=True)
