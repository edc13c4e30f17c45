"""Computing a run (:func:`compute`, anywhere: this process or a Ray worker) and running it
locally with its record (:func:`run`).

One run = one trained model of Tartaglione et al. 2020 (Sec. III-C, IV): an optional pneumonia
pre-training (itself a run, task ``"pretrain"``, shared by every fine-tune that uses it), then the
COVID fine-tune on a composition of Table I, scored on the test split of every composition (the
cross-dataset columns of Tables II-IV). A run id fixes the run: the seed is set right before the
model is created and right before its head is replaced, and the thread count is the same on every
executor (:func:`run_threads`), so a fine-tune gives the same weights whether its pre-training
was just trained or read from the cache.

The profile's ``max_images`` (smoke) keeps at most that many images per source and split,
pre-processed directly instead of through the whole-source cache. Images the chain rejects are
recorded per set with the chain's reason; no test set shrinks silently.
"""

from __future__ import annotations

import os
import sys
import time
from contextvars import ContextVar
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from covid_lib.data import COMPOSITIONS, compose, limit_rows, pretrain_rows
from covid_lib.data.compose import unreadable_files
from covid_lib.evaluate import metrics_table, score_images
from covid_lib.metrics import macro_auc, mean_estimate
from covid_lib.models import create_model
from covid_lib.preprocess import get_pipeline, preprocess_rows, preprocess_source
from covid_lib.profiles import resolve_device
from covid_lib.provenance import environment, machine_kind
from covid_lib.runs.fidelity import (CHECKED, RETRAINED, SCORE_TOLERANCE, CheckpointMismatch, checkpoint_digest,
                                     compare_scores, mismatch_message)
from covid_lib.runs.records import (DID_NOT_LEARN, DONE, Record, RunArtifacts, RunResult, checkpoint_bytes,
                                    checkpoint_dir, load_model, load_result, model_from_checkpoint, read_checkpoint,
                                    resume_path, write_artifacts, write_checkpoint, write_checkpoint_note)
from covid_lib.runs.spec import RunSpec
from covid_lib.train import (TrainConfig, available_cores, fit, load_images, make_dataset, predict, replace_head,
                             seed_everything)
from covid_lib.train.runtime import cpu_has_bf16

REJECTION_COLUMNS = ["set", "split", "source", "image_id", "step", "reason"]
#: Other kinds of COVID run, as ``(claims(spec) -> bool, compute(spec, data_root, device, threads,
#: progress, parent_checkpoint) -> RunArtifacts)``, registered by their own modules (imported with
#: :mod:`covid_lib.runs`); :func:`compute` hands a spec to the first kind that claims it.
RUN_KINDS: list[tuple[Callable[[RunSpec], bool], Callable[..., RunArtifacts]]] = []
#: How to re-score such a kind's record from a loaded checkpoint, as ``(claims(spec) -> bool,
#: rescore(spec, model, meta, data_root, device) -> scores)`` (:func:`rescore_record`); a kind
#: without one cannot be checked against its record by re-scoring.
RESCORE_KINDS: list[tuple[Callable[[RunSpec], bool], Callable[..., pd.DataFrame]]] = []


def run_threads(spec: RunSpec) -> int:
    """CPU threads of a run: the profile's ``threads``, else every core this machine gives the process."""
    return int(spec.profile_settings.threads or available_cores())


# ------------------------------------------------------------------------------------------- data
def _pipeline(spec: RunSpec):
    return get_pipeline(spec.pipeline, image_size=spec.resize_size).resolved()


def _reasons(missing: pd.DataFrame, pipeline, data_root, whole_sources: bool) -> pd.DataFrame:
    """The chain's step and reason for each row of ``missing`` (rows :func:`load_images` dropped)."""
    parts = []
    for source, part in missing.groupby("source", sort=True):
        rejected = preprocess_source(source, pipeline, data_root)[2] if whole_sources else \
            preprocess_rows(part, pipeline)[2]
        rejected = rejected.astype({"image_id": str}).drop_duplicates("image_id")[["image_id", "step", "reason"]]
        ids = pd.DataFrame({"source": source, "image_id": part["image_id"].astype(str).to_numpy()})
        parts.append(ids.merge(rejected, on="image_id", how="left"))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["source", "image_id", "step", "reason"])
    return out.fillna({"step": "unknown", "reason": "not in the pre-processing chain's output"})


#: Capped subsets (smoke) already through the chain in this process: a grid scores the same test
#: sets in every run. Keyed by pipeline hash and image ids; whole sources use the disk cache instead.
_SUBSETS: dict[tuple, tuple] = {}
_SUBSETS_MAX = 64


def _images(spec: RunSpec, rows: pd.DataFrame, data_root, set_name: str, split: str):
    """``(images, kept rows, rejections)`` of ``rows`` after the profile's cap."""
    p = spec.profile_settings
    rows = limit_rows(rows, p.max_images, seed=spec.split_seed)
    pipeline = _pipeline(spec)
    whole = p.max_images is None
    key = (pipeline.hash, str(data_root), tuple(zip(rows["source"], rows["image_id"].astype(str))))
    if whole or key not in _SUBSETS:
        images, kept = load_images(rows, pipeline, data_root, whole_sources=whole)
        keep = rows.index.isin(kept.index)
        rejected = _reasons(rows[~keep], pipeline, data_root, whole)
        if not whole:
            if len(_SUBSETS) >= _SUBSETS_MAX:
                _SUBSETS.pop(next(iter(_SUBSETS)))
            _SUBSETS[key] = (images, keep, rejected)
    else:
        images, keep, rejected = _SUBSETS[key]
        kept = rows[keep]
    return images, kept, rejected.assign(set=set_name, split=split)[REJECTION_COLUMNS]


def split_datasets(spec: RunSpec, rows: pd.DataFrame, data_root, splits: Sequence[str] = ("train", "val", "test"),
                   *, mean: float | None = None, std: float | None = None) -> dict:
    """Datasets of ``splits`` with their rows, rejections and counts, normalised by ``mean`` /
    ``std`` when given (an adapted run keeps its parent's), else by the training images'
    statistics; one line says what the chain refused (:func:`_say_refused`)."""
    out: dict = {"rows": {}, "data": {}, "rejected": [], "n": {}}
    for s in splits:
        images, kept, rejected = _images(spec, rows[rows["split"] == s], data_root, spec.composition, s)
        if mean is None and "train" in out["data"]:
            mean, std = out["data"]["train"].mean, out["data"]["train"].std
        out["data"][s] = make_dataset(kept, images, input_size=spec.input_size, augment=s == "train",
                                      mean=mean, std=std)
        out["rows"][s] = kept
        out["rejected"].append(rejected)
        out["n"][s] = {"n_expected": len(kept) + len(rejected), "n_used": len(kept)}
    _say_refused(spec, out["n"], rows, data_root)
    return out


def _say_refused(spec: RunSpec, counts: dict, rows: pd.DataFrame, data_root) -> None:
    """One line when the chain refused images of a split or the integrity check excluded files of
    the run's sources before the splits: nothing is dropped silently (issue 18)."""
    refused = {s: c["n_expected"] - c["n_used"] for s, c in counts.items()}
    sources = set(rows["source"])
    try:
        bad = unreadable_files(data_root)
    except Exception:  # noqa: BLE001 - a report, never a reason to fail the run
        bad = pd.DataFrame(columns=["source"])
    bad = bad[bad["source"].isin(sources)]
    if any(refused.values()) or len(bad):
        parts = [f"the chain refused {n} of {counts[s]['n_expected']} {s} images" for s, n in refused.items() if n]
        if len(bad):
            parts.append(f"the integrity check excluded {len(bad)} file(s) of {', '.join(sorted(set(bad['source'])))} "
                         "before the splits (`python -m covid_lib data summary` lists them)")
        print(f"run {spec.run_id}: " + "; ".join(parts), flush=True)


# -------------------------------------------------------------------------------------- precision
def machine_precision(spec: RunSpec, device: str = "auto") -> RunSpec:
    """``spec`` as this machine can run it: bf16 asked of a CPU without native bf16 becomes an
    explicit ``precision="fp32"`` spec (another run id), so a record never claims a precision its
    run did not have. CUDA and bf16-capable CPUs keep the spec unchanged."""
    if spec.effective_precision == "bf16" and resolve_device(device) == "cpu" and not cpu_has_bf16():
        return replace(spec, precision="fp32")
    return spec


def _check_precision(spec: RunSpec, device: str) -> None:
    if machine_precision(spec, device) is not spec:
        raise ValueError(f"run {spec.run_id} asks for bf16, which this CPU lacks: its record would claim a "
                         "precision it did not have. Run machine_precision(spec) instead (an fp32 run with its "
                         "own id); run() and run_grid(executor='local') do so themselves.")


# ---------------------------------------------------------------------------------------- compute
#: The checkpoint folder whose ``<run_id>/resume.pt`` the run being computed resumes from (set by
#: :func:`compute` for the driver's own runs; None: no resume file, e.g. on a Ray worker).
_RESUME_STORAGE: ContextVar[Path | None] = ContextVar("resume_storage", default=None)


def _train_config(spec: RunSpec, device: str, threads: int, progress: bool):
    storage = _RESUME_STORAGE.get()
    resume = str(resume_path(spec.run_id, storage)) if storage is not None else None
    return TrainConfig.from_profile(spec.profile, epochs=spec.epochs, seed=spec.seed, device=device,
                                    precision=spec.precision, threads=threads, progress=progress,
                                    resume_file=resume, resume_key=spec.run_id)


def _initial_model(spec: RunSpec, num_classes: int, pretrain_checkpoint: bytes | None):
    """A fresh model, or the pre-trained one with a new head (paper Sec. III-C); seeded right
    before the model is created and right before the head is replaced."""
    pre = spec.pretrain_spec()
    if pre is None:
        seed_everything(spec.seed)
        return create_model(spec.arch, num_classes=num_classes)
    model, meta = model_from_checkpoint(pretrain_checkpoint)
    if meta["run_id"] != pre.run_id:
        raise ValueError(f"checkpoint of run {meta['run_id']} given, {spec.run_id} needs {pre.run_id}")
    seed_everything(spec.seed)
    return replace_head(model.train(), num_classes)


def _spec_record(spec: RunSpec, device: str, result, extra: dict) -> dict:
    return {"run_id": spec.run_id, "spec": asdict(spec), "profile": spec.profile_settings.to_dict(),
            "pipeline": _pipeline(spec).to_dict(), "pipeline_hash": _pipeline(spec).hash,
            "data_version": spec.data_version, "environment": environment(device),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "did_not_learn": result.did_not_learn,
            "monitor": result.monitor, "best_value": result.best_value, **extra}


def _fit_summary(result) -> dict:
    return {"best_epoch": result.best_epoch, "monitor": result.monitor, "best_value": result.best_value,
            "did_not_learn": result.did_not_learn, "stopped_early": result.stopped_early}


def _timings(t0: float, t_data: float, result, t_eval: float, runtime_threads: int) -> dict:
    """``timings.json``: seconds per stage, and the runtime with the machine kind (not in the run
    id: bf16 weights differ between CPUs, so a retraining's departure can be traced). ``fit_s`` and
    ``total_s`` include the fit time of earlier sessions when the fit was resumed (``resumed``: the
    epoch it resumed at, its sessions, their fit seconds)."""
    runtime = {**result.runtime, "machine": machine_kind(result.runtime.get("device", "cpu"))}
    return {"data_s": t_data, "fit_s": result.seconds, "eval_s": t_eval,
            "total_s": time.perf_counter() - t0 + getattr(result, "seconds_before", 0.0),
            "train_images_per_s": result.images_per_s, "runtime": runtime, "threads": runtime_threads,
            "resumed": getattr(result, "resume_info", None)}


def _per_class_auc(y: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> dict:
    """Per-class one-vs-rest test AUC of a pre-training and, with three classes (ChestXRay: normal,
    bacterial, viral), normal against pneumonia (either kind), with patient-cluster intervals."""
    if not len(y) or probs.shape[1] < 3:
        return {}
    out = {"test_class_auc": {}}
    for k in range(probs.shape[1]):
        est = macro_auc((y == k).astype(int), np.column_stack([1 - probs[:, k], probs[:, k]]), groups=groups)
        out["test_class_auc"][str(k)] = est.to_dict()
    est = macro_auc((y > 0).astype(int), np.column_stack([probs[:, 0], probs[:, 1:].sum(1)]), groups=groups)
    out["test_pneumonia_auc"], out["test_pneumonia_auc_interval"] = est.value, est.to_dict()
    return out


def _pretrain(spec: RunSpec, data_root, device: str, threads: int, progress: bool,
              pretrain_checkpoint: bytes | None = None) -> RunArtifacts:
    """Pre-train on a pneumonia source; record validation/test AUC and accuracy (a run kind's
    signature: ``pretrain_checkpoint`` is always None, a pre-training has no parent)."""
    t0 = time.perf_counter()
    rows = pretrain_rows(spec.composition, data_root, split_seed=spec.split_seed)
    sets = split_datasets(spec, rows, data_root)
    t_data = time.perf_counter() - t0
    num_classes = int(rows["label"].max()) + 1
    model = _initial_model(spec, num_classes, None)
    result = fit(model, sets["data"]["train"], sets["data"]["val"], _train_config(spec, device, threads, progress))
    t1 = time.perf_counter()
    probs, y, _ = predict(result.model, sets["data"]["test"], device=device)
    rejected = pd.concat(sets["rejected"], ignore_index=True)
    test = {"n_expected": sets["n"]["test"]["n_expected"], "n_scored": len(y),
            "rejected": rejected.query("split == 'test'")[["image_id", "reason"]].to_dict("records")}
    test_rows = sets["rows"]["test"]
    scores = test_rows[["source", "image_id", "patient_id", "group_id"]].reset_index(drop=True).assign(label=y)
    for k in range(probs.shape[1]):
        scores[f"prob_{k}"] = probs[:, k]
    test_auc = macro_auc(y, probs, groups=scores["group_id"].astype(str).to_numpy()) if len(y) else None
    accuracy = mean_estimate((probs.argmax(1) == y).astype(float), groups=scores["group_id"].astype(str).to_numpy()) \
        if len(y) else None
    metrics = {"table": [], **_fit_summary(result),
               "test_auc": test_auc.value if test_auc else float("nan"),
               "test_auc_interval": test_auc.to_dict() if test_auc else None,
               "test_accuracy": accuracy.value if accuracy else float("nan"),
               "test_accuracy_interval": accuracy.to_dict() if accuracy else None,
               "num_classes": num_classes, "splits": sets["n"], "test_sets": {spec.composition: test}}
    metrics.update(_per_class_auc(y, probs, scores["group_id"].astype(str).to_numpy()))
    train = sets["data"]["train"]
    files = {"spec.json": _spec_record(spec, device, result, {"rejected": len(rejected)}),
             "history.csv": result.history, "rejections.csv": rejected, "scores.csv": scores,
             "metrics.json": metrics,
             "timings.json": _timings(t0, t_data, result, time.perf_counter() - t1, threads)}
    return RunArtifacts(spec, files, checkpoint_bytes(result.model, spec, num_classes, train.mean, train.std))


def score_test_sets(spec: RunSpec, model, mean: float, std: float, test_rows: dict[str, pd.DataFrame], data_root,
                    device: str):
    """Scores on each named set of test rows through the run's chain, with each set's expected and
    scored counts and the images the chain rejected."""
    parts, sets, rejected = [], {}, []
    for name, rows in test_rows.items():
        images, kept, rej = _images(spec, rows, data_root, name, "test")
        data = make_dataset(kept, images, input_size=spec.input_size, mean=mean, std=std)
        parts.append(score_images(model, data, kept, test_set=name, device=device))
        sets[name] = {"n_expected": len(kept) + len(rej), "n_scored": len(kept),
                      "rejected": rej[["image_id", "reason"]].to_dict("records")}
        rejected.append(rej)
    return pd.concat(parts, ignore_index=True), sets, rejected


def _score_all(spec: RunSpec, model, mean: float, std: float, data_root, device: str):
    """Scores on the test split of every composition (the cross-dataset columns of Tables II-IV)."""
    test_rows = {name: compose(name, data_root, seed=spec.split_seed).query("split == 'test'") for name in COMPOSITIONS}
    return score_test_sets(spec, model, mean, std, test_rows, data_root, device)


def _finetune(spec: RunSpec, data_root, device: str, threads: int, progress: bool,
              pretrain_checkpoint: bytes | None) -> RunArtifacts:
    """Fine-tune (or train from scratch) on a composition, then score every test set."""
    t0 = time.perf_counter()
    sets = split_datasets(spec, compose(spec.composition, data_root, seed=spec.split_seed), data_root,
                           splits=("train", "val"))
    t_data = time.perf_counter() - t0
    model = _initial_model(spec, 2, pretrain_checkpoint)
    result = fit(model, sets["data"]["train"], sets["data"]["val"], _train_config(spec, device, threads, progress))
    train = sets["data"]["train"]
    t1 = time.perf_counter()
    val_scores = score_images(result.model, sets["data"]["val"], sets["rows"]["val"],
                              test_set=f"{spec.composition} (validation)", device=device)
    scores, test_sets, test_rejected = _score_all(spec, result.model, train.mean, train.std, data_root, device)
    table = metrics_table(scores, val_scores, seed=spec.seed)
    rejected = pd.concat(sets["rejected"] + test_rejected, ignore_index=True)
    metrics = {"table": table.to_dict("records"), **_fit_summary(result), "splits": sets["n"], "test_sets": test_sets}
    pre = spec.pretrain_spec()
    extra = {"pretrain_run": pre.run_id if pre else None, "rejected": len(rejected)}
    files = {"spec.json": _spec_record(spec, device, result, extra), "history.csv": result.history,
             "val_scores.csv": val_scores, "scores.csv": scores, "rejections.csv": rejected,
             "metrics.json": metrics, "timings.json": _timings(t0, t_data, result, time.perf_counter() - t1, threads)}
    return RunArtifacts(spec, files, checkpoint_bytes(result.model, spec, 2, train.mean, train.std))


def compute(spec: RunSpec, *, pretrain_checkpoint: bytes | None = None, data_root: str | os.PathLike | None = None,
            device: str = "auto", progress: bool = False, resume: str | os.PathLike | None = None) -> RunArtifacts:
    """Train and score a resolved spec without writing anything (any executor).

    Args:
        spec: a resolved spec (:meth:`RunSpec.resolved`).
        pretrain_checkpoint: the checkpoint bytes of ``spec.parent_spec()`` (the pre-training of
            a fine-tune, the source-split run of an adaptation).
        data_root: the data root (default: ``COVID_LIB_DATA`` / ``../shared/data``).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``; not part of the run id.
        progress: tqdm bars while training.
        resume: a checkpoint folder (:func:`checkpoint_dir`): the fit writes each finished epoch to
            ``<resume>/<run_id>/resume.pt`` and continues from it when it is there, so a stopped
            session loses at most one epoch; :func:`write_artifacts` deletes it. None: no file.
    """
    if not spec.data_version or spec.input_size is None or spec.epochs is None:
        raise ValueError(f"compute() needs a resolved spec (spec.resolved(data_root)), got {spec}")
    if spec.parent_spec() is not None and pretrain_checkpoint is None:
        how = "fine-tunes pre-training run" if spec.adapt is None else "adapts run"
        raise ValueError(f"run {spec.run_id} {how} {spec.parent_spec().run_id}: pass its checkpoint")
    threads = run_threads(spec)
    torch.set_num_threads(threads)  # before the U-Net and the data: the same count on every executor
    device = resolve_device(device)
    _check_precision(spec, device)
    if spec.task == "pretrain":
        compute_kind = _pretrain
    else:
        kinds = [compute_kind for claims, compute_kind in RUN_KINDS if claims(spec)]  # e.g. source splits, planted
        if len(kinds) > 1:
            raise ValueError(f"run {spec.run_id} is claimed by {len(kinds)} kinds of run "
                             f"({', '.join(k.__name__ for k in kinds)}): one kind must own each spec")
        compute_kind = kinds[0] if kinds else _finetune
    token = _RESUME_STORAGE.set(Path(resume) if resume is not None else None)
    try:
        artifacts = compute_kind(spec, data_root, device, threads, progress, pretrain_checkpoint)
    finally:
        _RESUME_STORAGE.reset(token)
    if pretrain_checkpoint is not None:  # the driver adds whether it reproduced the parent's record
        artifacts.files["lineage.json"] = {"parent_run": spec.parent_spec().run_id,
                                           "parent_checkpoint_sha256": checkpoint_digest(pretrain_checkpoint)}
    return artifacts


def run(spec: RunSpec, *, data_root: str | os.PathLike | None = None, device: str = "auto",
        progress: bool = True, force: bool = False, storage: str | os.PathLike | None = None,
        allow_mismatch: bool = False) -> RunResult:
    """Train and record ``spec`` (and its pre-training) unless its record exists (then read it back).

    A record that exists is never rewritten without ``force``. When it lacks its checkpoint here
    (a committed record on a fresh clone), a pre-training, and any parent a run to train starts
    from, is retrained into the checkpoint storage only, its record left as it is
    (:func:`restore_checkpoint`, which says so in one line, and refuses a retraining that does not
    reproduce the record unless ``allow_mismatch``). A fine-tune starts from its parent's
    checkpoint even then, and its ``lineage.json`` says so.

    Args:
        spec: what to run; ``data_version`` is filled from ``data_root`` when empty.
        data_root, device, progress: as :func:`compute`.
        force: retrain this run even when a record exists (not its pre-training).
        storage: checkpoint folder (default: the cache's ``runs`` folder).
        allow_mismatch: serve a recorded pre-training's checkpoint retrained here that differs from
            its record (:func:`restore_checkpoint`).
    """
    spec = machine_precision(spec.resolved(data_root), device)
    record = Record.of(spec, storage=storage)
    if not force and record.recorded:
        if record.need_checkpoint and (record.checkpoint is None or record.checkpoint_differs):
            restore_checkpoint(spec, data_root=data_root, device=device, progress=progress, storage=storage,
                               allow_mismatch=allow_mismatch)  # a pre-training comes with its weights
        return load_result(spec, reused=True, storage=storage)
    artifacts = compute(spec, pretrain_checkpoint=_parent_checkpoint(spec, data_root, device, progress, storage),
                        data_root=data_root, device=device, progress=progress, resume=checkpoint_dir(storage))
    write_artifacts(artifacts, storage)
    return load_result(spec, reused=False, storage=storage)


def _parent_checkpoint(spec: RunSpec, data_root, device: str, progress: bool, storage) -> bytes | None:
    """The checkpoint ``spec`` starts from: its parent trained when missing, its weights restored
    when only its record is here (even when the retraining differs from the parent's record: the
    child's ``lineage.json`` says so); None without a parent."""
    pre = spec.parent_spec()
    if pre is None:
        return None
    run(pre, data_root=data_root, device=device, progress=progress, storage=storage, allow_mismatch=True)
    if Record.of(pre, storage=storage).checkpoint is None:  # a recorded parent that is not a pre-training
        restore_checkpoint(pre, data_root=data_root, device=device, progress=progress, storage=storage,
                           allow_mismatch=True)
    return read_checkpoint(pre.run_id, storage, allow_mismatch=True)


def restore_message(spec: RunSpec, storage: str | os.PathLike | None = None) -> str:
    """The line that says a recorded run is being retrained for its checkpoint only."""
    return (f"run {spec.run_id}: recorded, but its checkpoint is not cached here; retraining it into "
            f"{checkpoint_dir(storage)} (its committed record is left as it is)")


def restore_checkpoint(spec: RunSpec, *, data_root: str | os.PathLike | None = None, device: str = "auto",
                       progress: bool = True, storage: str | os.PathLike | None = None,
                       tolerance: float = SCORE_TOLERANCE, allow_mismatch: bool = False) -> Path:
    """Retrain a recorded run (resolved) to get its checkpoint back, writing the checkpoint only:
    its record, committed, is not touched. A run id fixes the run, but bf16 weights differ between
    CPUs, so the retrained model's test scores are compared with the record's
    (:func:`write_restored`) before it is served as the recorded model.

    A retraining that differs stays in the cache, noted as such: a later call does not retrain it
    again but refuses it again.

    Args:
        tolerance: largest absolute score difference of the recorded model.
        allow_mismatch: return a retraining that differs from the record anyway (the caller states
            the departure).

    Raises:
        CheckpointMismatch: the retraining (now, or cached from an earlier call) differs from the
            record by more than ``tolerance``, and not ``allow_mismatch``.
    """
    record = Record.of(spec, storage=storage)
    if record.checkpoint is not None and record.checkpoint_differs:  # retrained here before: not again
        return _serve(record, allow_mismatch)
    print(restore_message(spec, storage), file=sys.stderr, flush=True)
    artifacts = compute(spec, pretrain_checkpoint=_parent_checkpoint(spec, data_root, device, progress, storage),
                        data_root=data_root, device=device, progress=progress, resume=checkpoint_dir(storage))
    note = write_restored(artifacts, storage=storage, tolerance=tolerance)
    if note["matches_record"] is None:
        _warn_if_different(artifacts, record)
    elif not note["matches_record"]:
        print(f"warning: {mismatch_message(note)}", file=sys.stderr, flush=True)
    return _serve(record, allow_mismatch)


def _serve(record: Record, allow_mismatch: bool) -> Path:
    if record.checkpoint_differs and not allow_mismatch:
        raise CheckpointMismatch(record.checkpoint_note, record.checkpoint.parent)
    return record.checkpoint


def write_restored(artifacts: RunArtifacts, *, storage: str | os.PathLike | None = None,
                   tolerance: float = SCORE_TOLERANCE) -> dict:
    """Write a recorded run's retrained checkpoint (never its record) with its note: its test scores
    against the record's (:func:`~covid_lib.runs.fidelity.compare_scores`), and the machine kinds
    of the retraining and of the record. Returns the note."""
    record = Record.of(artifacts.spec)
    comparison = compare_scores(artifacts.files.get("scores.csv"), record.scores(), tolerance=tolerance)
    runtime = (artifacts.files.get("timings.json") or {}).get("runtime") or {}
    note = {"origin": RETRAINED, "matches_record": comparison.pop("matches"), **comparison,
            "machine": runtime.get("machine") or machine_kind(runtime.get("device", "cpu")),
            "recorded_machine": (record.timings.get("runtime") or {}).get("machine")}
    write_checkpoint(artifacts, storage, note=note)
    return Record.of(artifacts.spec, storage=storage).checkpoint_note


def restore_checkpoints(specs: Sequence[RunSpec], *, data_root: str | os.PathLike | None = None,
                        device: str = "auto", progress: bool = False, storage: str | os.PathLike | None = None,
                        outcomes: Sequence[str] = (DONE, DID_NOT_LEARN)) -> dict[str, CheckpointMismatch]:
    """Restore the checkpoint of every recorded run of ``specs`` whose record's outcome is one of
    ``outcomes`` and whose checkpoint is not cached here (:func:`restore_checkpoint`); returns, by
    run id, the runs whose checkpoint here differs from their record (tables list them as
    :data:`~covid_lib.runs.fidelity.DIFFERS`)."""
    out: dict[str, CheckpointMismatch] = {}
    for spec in specs:
        record = Record.of(spec, storage=storage)
        if record.outcome not in outcomes:
            continue
        try:
            if record.checkpoint is None or record.checkpoint_differs:
                restore_checkpoint(spec, data_root=data_root, device=device, progress=progress, storage=storage)
        except CheckpointMismatch as err:
            out[spec.run_id] = err
    return out


def _warn_if_different(artifacts: RunArtifacts, record: Record) -> None:
    """The fallback when no test score could be compared: the best validation value."""
    new, old = artifacts.files["metrics.json"].get("best_value"), record.metrics.get("best_value")
    if isinstance(new, float) and isinstance(old, float) and abs(new - old) > 1e-6:
        print(f"warning: run {record.run_id} retrained to best {new:.4f}, its record says {old:.4f}: "
              "the restored checkpoint is not the recorded model", file=sys.stderr)


def checkpoint_matches_record(spec: RunSpec, *, data_root: str | os.PathLike | None = None, device: str = "cpu",
                              storage: str | os.PathLike | None = None, tolerance: float = SCORE_TOLERANCE,
                              loaded: tuple | None = None) -> dict:
    """Whether the checkpoint here is the recorded model: ``{"images", "max_abs_diff", "matches"}``.

    A checkpoint not cached is restored (:func:`restore_checkpoint`, which compares it); one whose
    note holds a comparison answers from it; one cached without a check (before notes were written)
    is re-scored on its record's test images (:func:`rescore_record`, with the ``loaded`` model
    when given) and the outcome noted beside it, so that it is refused from then on if it differs.
    """
    record = Record.of(spec, storage=storage)
    if record.checkpoint is None:
        restore_checkpoint(spec, data_root=data_root, device=device, progress=False, storage=storage,
                           tolerance=tolerance, allow_mismatch=True)
    note = record.checkpoint_note
    if note.get("max_abs_diff") is None:
        rescored = rescore_record(spec, data_root=data_root, device=device, storage=storage, loaded=loaded)
        comparison = compare_scores(rescored, record.scores(), tolerance=tolerance)
        note = write_checkpoint_note(spec.run_id, storage, {
            "origin": CHECKED, "matches_record": comparison.pop("matches"), **comparison,
            "machine": machine_kind(device), "recorded_machine": (record.timings.get("runtime") or {}).get("machine")})
    diff = note.get("max_abs_diff")
    return {"images": int(note.get("images") or 0), "max_abs_diff": float("nan") if diff is None else float(diff),
            "matches": diff is not None and float(diff) <= tolerance}


# ------------------------------------------------------------------------------ re-scoring a run
def rescore_record(spec: RunSpec, *, data_root: str | os.PathLike | None = None, device: str = "cpu",
                   storage: str | os.PathLike | None = None, loaded: tuple | None = None) -> pd.DataFrame:
    """The cached checkpoint's scores (or those of its ``loaded`` ``(model, meta)``) on its record's
    own test images, through the run's chain, in the record's columns (a pre-training's ``prob_*``,
    a fine-tune's ``score`` per test set, a kind of :data:`RESCORE_KINDS` its own), whether or not the checkpoint reproduces the record (what
    :func:`checkpoint_matches_record` checks)."""
    recorded = Record.of(spec).scores()
    rescore = next((f for claims, f in RESCORE_KINDS if claims(spec)), None) if spec.task != "pretrain" else None
    if spec.task != "pretrain" and rescore is None and any(claims(spec) for claims, _ in RUN_KINDS):
        raise ValueError(f"run {spec.run_id}: re-scoring a record is implemented for pre-trainings, fine-tunes on "
                         "the compositions and the kinds of RESCORE_KINDS; restore this kind of run with "
                         "restore_checkpoint")
    model, meta = loaded if loaded is not None else load_model(spec, device, storage, allow_mismatch=True)
    if rescore is not None:  # e.g. a planted run: its test set in each variant
        return rescore(spec, model, meta, data_root, device)
    ids = set(zip(recorded.get("source", []), recorded.get("image_id", [])))

    def recorded_rows(rows: pd.DataFrame) -> pd.DataFrame:
        keys = zip(rows["source"], rows["image_id"].astype(str))
        return rows[[k in ids for k in keys]].reset_index(drop=True)

    if spec.task == "pretrain":
        rows = recorded_rows(pretrain_rows(spec.composition, data_root, split_seed=spec.split_seed))
        data, kept, _ = rows_dataset(spec, rows, mean=meta["mean"], std=meta["std"], data_root=data_root,
                                     set_name=spec.composition)
        probs, _, _ = predict(model, data, device=device)
        out = kept[["source", "image_id"]].reset_index(drop=True)
        return out.join(pd.DataFrame(probs, columns=[f"prob_{k}" for k in range(probs.shape[1])]))
    unknown = sorted(set(recorded.get("test_set", [])) - set(COMPOSITIONS))
    if unknown:
        raise ValueError(f"run {spec.run_id}: its record scores test sets that are not compositions "
                         f"({', '.join(unknown)}); re-scoring covers the compositions only")
    test_rows = {name: recorded_rows(compose(name, data_root, seed=spec.split_seed).query("split == 'test'"))
                 for name in sorted(set(recorded.get("test_set", [])))}
    return score_test_sets(spec, model, meta["mean"], meta["std"], test_rows, data_root, device)[0]


def rows_dataset(spec: RunSpec, rows: pd.DataFrame, *, mean: float, std: float,
                 data_root: str | os.PathLike | None = None, set_name: str = "", split: str = "test"):
    """``rows`` through the run's chain (its pipeline, the cache and the profile's cap) as an
    unaugmented dataset normalised by ``mean`` / ``std`` (a checkpoint's training statistics).

    Returns ``(dataset, kept rows, rejections)``: the same images and normalisation a run's own
    test scoring (:func:`_score_all`) uses, for images a record does not score (Table IV's
    redraws, the features of Fig. 3).
    """
    images, kept, rejected = _images(spec, rows, data_root, set_name, split)
    return make_dataset(kept, images, input_size=spec.input_size, mean=mean, std=std), kept, rejected


def score_rows(spec: RunSpec, rows: pd.DataFrame, *, data_root: str | os.PathLike | None = None,
               device: str = "cpu", storage: str | os.PathLike | None = None, test_set: str = ""
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A finished run's scores on any rows (:func:`covid_lib.evaluate.score_images` columns) and
    the rows the chain rejected; equal to the record's scores on the images they share."""
    model, meta = load_model(spec, device, storage)
    data, kept, rejected = rows_dataset(spec, rows, mean=meta["mean"], std=meta["std"], data_root=data_root,
                                        set_name=test_set)
    return score_images(model, data, kept, test_set=test_set, device=device), rejected
