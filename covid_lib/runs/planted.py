"""A planted run: a COVID fine-tune whose COVID+ training and validation images carry a mark.

The controlled experiment the real data cannot give (Tartaglione et al. 2020, Sec. III-B claim
that the chain removes source biases; Ben Ahmed et al. 2021 on confounders). A run with
``RunSpec.plant`` set (:data:`covid_lib.preprocess.plant.MARKS`):

- plants the mark on the raw image of every COVID+ image of the composition's **training and
  validation** splits, before the chain (:func:`covid_lib.preprocess.plant.preprocess_marked`: the
  whole-source cache holds unmarked images, so these splits are pre-processed on the fly; the
  cost is recorded as ``plant.preprocess_s``);
- trains as any fine-tune (:func:`covid_lib.train.fit`, model selection on the marked validation
  set), watching after every epoch the AUC on the same validation images **unmarked** and
  **flipped** (the mark on COVID- instead): ``val_unmarked_auc`` and ``val_flipped_auc`` in the
  history;
- scores the composition's test set three ways (:data:`VARIANTS`): ``unmarked``, ``marked``
  (COVID+ marked, as in training) and ``flipped`` (COVID- marked), with the metrics table of
  :func:`covid_lib.evaluate.metrics_table` (AUC with patient-cluster bootstrap intervals);
- records ``plant.epochs_to_learn``: the first epoch whose flipped validation AUC is below 0.5
  (the model ranks by the mark rather than the disease), ``plant.epochs_to_learn_sustained``:
  the first epoch from which it stays below 0.5 to the end of training (None: never).

Other compositions' test sets are not scored (the question is the mark, not transfer).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from covid_lib.data import compose, limit_rows
from covid_lib.evaluate import metrics_table, score_images
from covid_lib.preprocess import load_model
from covid_lib.preprocess.plant import preprocess_marked
from covid_lib.runs.execution import (REJECTION_COLUMNS, RESCORE_KINDS, RUN_KINDS, _fit_summary, _initial_model, _pipeline,
                                      _spec_record, _timings, _train_config)
from covid_lib.runs.records import RunArtifacts, checkpoint_bytes
from covid_lib.runs.spec import RunSpec
from covid_lib.train import fit, make_dataset

#: The test-set variants of a planted run: which class carries the mark.
VARIANTS: dict[str, str] = {"unmarked": "none", "marked": "COVID+ (as in training)", "flipped": "COVID-"}


def variant_set(composition: str, variant: str) -> str:
    """The ``test_set`` name of a variant in a planted record, e.g. ``"CORDA · flipped"``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return f"{composition} · {variant}"


def variant_flags(labels, variant: str) -> np.ndarray:
    """Which images carry the mark in ``variant``: none, the COVID+ (label 1) or the COVID- ones."""
    y = np.asarray(labels).astype(int)
    if variant == "unmarked":
        return np.zeros(len(y), bool)
    if variant == "marked":
        return y == 1
    if variant == "flipped":
        return y == 0
    raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")


def first_below(values, threshold: float = 0.5, *, sustained: bool = False) -> int | None:
    """The 1-based epoch of the first value under ``threshold`` (NaN never counts); with
    ``sustained``, the first epoch from which every later value stays under it. None: never.

    Example:
        >>> first_below([0.6, 0.4, 0.55, 0.3, 0.2]), first_below([0.6, 0.4, 0.55, 0.3, 0.2], sustained=True)
        (2, 4)
    """
    below = np.asarray(values, float) < threshold
    if not below.any():
        return None
    if not sustained:
        return int(np.argmax(below)) + 1
    if not below[-1]:
        return None
    above = np.flatnonzero(~below)
    return int(above[-1]) + 2 if len(above) else 1


def _versions(spec: RunSpec, rows: pd.DataFrame, model, device: str) -> dict:
    """Both copies (unmarked, marked) of ``rows`` through the run's chain."""
    pipe = _pipeline(spec)
    n = len(rows)
    return {False: preprocess_marked(rows, pipe, spec.plant, np.zeros(n, bool), model=model, device=device),
            True: preprocess_marked(rows, pipe, spec.plant, np.ones(n, bool), model=model, device=device)}


def _assemble(versions: dict, rows: pd.DataFrame, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``rows`` with the marked copy where ``flags``, and which rows both copies kept."""
    keep = versions[False].ok & versions[True].ok
    images = np.where(flags[:, None, None], versions[True].images, versions[False].images)
    return images[keep], keep


def _rejections(versions: dict, rows: pd.DataFrame, keep: np.ndarray, set_name: str, split: str) -> pd.DataFrame:
    rej = pd.concat([versions[False].rejections, versions[True].rejections]).drop_duplicates("image_id")
    lost = rows[~keep][["source", "image_id"]].astype({"image_id": str})
    out = lost.merge(rej[["image_id", "step", "reason"]], on="image_id", how="left")
    out = out.fillna({"step": "unknown", "reason": "not in the pre-processing chain's output"})
    return out.assign(set=set_name, split=split)[REJECTION_COLUMNS]


def planted_datasets(spec: RunSpec, rows: pd.DataFrame, versions: dict) -> dict:
    """The datasets of a planted run from both copies of each split (``versions[split][False/True]``,
    :class:`~covid_lib.preprocess.plant.MarkedImages` of that split's rows in order):

    ``train`` and ``val`` (COVID+ marked: what the model trains and is selected on), ``val ·
    unmarked``, ``val · flipped`` (watched per epoch) and ``test · <variant>`` for each of
    :data:`VARIANTS`; all normalised by the training set's statistics, only ``train`` augmented.
    Rows that either copy lost are left out of every variant (the same images in each).
    """
    out, stats = {}, {}
    wanted = [("train", "marked"), ("val", "marked"), ("val", "unmarked"), ("val", "flipped"),
              *[("test", v) for v in VARIANTS]]
    for split, variant in wanted:
        if split not in versions:
            continue
        part = rows[rows["split"] == split].reset_index(drop=True)
        images, keep = _assemble(versions[split], part, variant_flags(part["label"], variant))
        name = split if (split != "test" and variant == "marked") else f"{split} · {variant}"
        out[name] = make_dataset(part[keep], images, input_size=spec.input_size, augment=split == "train",
                                 mean=stats.get("mean"), std=stats.get("std"))
        if split == "train":
            stats = {"mean": out[name].mean, "std": out[name].std}
    return out


def planted_finetune(spec: RunSpec, data_root, device: str, threads: int, progress: bool,
                     pretrain_checkpoint: bytes | None) -> RunArtifacts:
    """Train on a composition with ``spec.plant`` on its COVID+ train/val images; score the test
    set unmarked, marked and flipped (see the module docstring)."""
    t0 = time.perf_counter()
    pipe = _pipeline(spec)
    unet = load_model(pipe, device) if pipe.uses_model else None
    rows = limit_rows(compose(spec.composition, data_root, seed=spec.split_seed), spec.profile_settings.max_images,
                      seed=spec.split_seed)
    kept, rejected, n, versions, seconds = {}, [], {}, {}, 0.0
    for split in ("train", "val", "test"):
        part = rows[rows["split"] == split].reset_index(drop=True)
        versions[split] = _versions(spec, part, unet, device)
        seconds += versions[split][False].seconds + versions[split][True].seconds
        keep = versions[split][False].ok & versions[split][True].ok
        kept[split] = part[keep]
        rejected.append(_rejections(versions[split], part, keep, spec.composition, split))
        n[split] = {"n_expected": len(part), "n_used": int(keep.sum())}
    t_data = time.perf_counter() - t0

    sets = planted_datasets(spec, rows, versions)
    train, val = sets["train"], sets["val"]
    watch = {"val_unmarked": sets["val · unmarked"], "val_flipped": sets["val · flipped"]}
    model = _initial_model(spec, 2, pretrain_checkpoint)
    result = fit(model, train, val, _train_config(spec, device, threads, progress), watch=watch)
    t1 = time.perf_counter()
    val_scores = score_images(result.model, val, kept["val"], test_set=f"{spec.composition} (validation)",
                              device=device)
    parts, test_sets = [], {}
    test_rejected = rejected[-1]
    for variant in VARIANTS:
        name = variant_set(spec.composition, variant)
        parts.append(score_images(result.model, sets[f"test · {variant}"], kept["test"], test_set=name,
                                  device=device))
        test_sets[name] = {"n_expected": n["test"]["n_expected"], "n_scored": n["test"]["n_used"],
                           "marked": VARIANTS[variant],
                           "rejected": test_rejected[["image_id", "reason"]].to_dict("records")}
    scores = pd.concat(parts, ignore_index=True)
    table = metrics_table(scores, val_scores, seed=spec.seed)
    history = result.history
    n_preprocessed = 2 * sum(v["n_expected"] for v in n.values())  # each image unmarked and marked
    plant = {"mark": spec.plant, "marked_in": "COVID+ images of the training and validation splits",
             "epochs_run": int(len(history)),
             "epochs_to_learn": first_below(history["val_flipped_auc"]),
             "epochs_to_learn_sustained": first_below(history["val_flipped_auc"], sustained=True),
             "preprocess_s": seconds, "images_preprocessed": int(n_preprocessed),
             "preprocess_s_per_image": seconds / max(1, n_preprocessed)}
    all_rejected = pd.concat(rejected, ignore_index=True)
    metrics = {"table": table.to_dict("records"), **_fit_summary(result), "splits": {k: n[k] for k in ("train", "val")},
               "test_sets": test_sets, "plant": plant}
    pre = spec.pretrain_spec()
    extra = {"pretrain_run": pre.run_id if pre else None, "rejected": len(all_rejected), "plant": plant}
    files = {"spec.json": _spec_record(spec, device, result, extra), "history.csv": history,
             "val_scores.csv": val_scores, "scores.csv": scores, "rejections.csv": all_rejected,
             "metrics.json": metrics, "timings.json": _timings(t0, t_data, result, time.perf_counter() - t1, threads)}
    return RunArtifacts(spec, files, checkpoint_bytes(result.model, spec, 2, train.mean, train.std))


RUN_KINDS.append((lambda spec: spec.plant is not None, planted_finetune))


def planted_test_scores(spec: RunSpec, model, meta: dict, data_root=None, device: str = "cpu") -> pd.DataFrame:
    """A planted run's test scores from a loaded ``model`` and its checkpoint's ``meta`` (``mean``,
    ``std``: the training set's statistics), every variant of :data:`VARIANTS`, computed as the run
    scored them (both copies of each test image through the run's chain, the rows either copy lost
    left out of every variant): the record's ``scores.csv`` columns, for
    :func:`covid_lib.runs.rescore_record` (is a cached checkpoint the recorded model?)."""
    pipe = _pipeline(spec)
    unet = load_model(pipe, device) if pipe.uses_model else None
    rows = limit_rows(compose(spec.composition, data_root, seed=spec.split_seed), spec.profile_settings.max_images,
                      seed=spec.split_seed)
    part = rows[rows["split"] == "test"].reset_index(drop=True)
    versions = _versions(spec, part, unet, device)
    parts = []
    for variant in VARIANTS:
        images, keep = _assemble(versions, part, variant_flags(part["label"], variant))
        data = make_dataset(part[keep], images, input_size=spec.input_size, mean=meta["mean"], std=meta["std"])
        parts.append(score_images(model, data, part[keep], test_set=variant_set(spec.composition, variant),
                                  device=device))
    return pd.concat(parts, ignore_index=True)


RESCORE_KINDS.append((lambda spec: spec.plant is not None, planted_test_scores))
