"""Which step of the chain removes a planted mark, measured without a CNN.

Tartaglione et al. 2020 (Sec. III-B) say their chain removes source "biases" such as markers.
A mark we plant ourselves (:mod:`covid_lib.preprocess.plant`) on the raw image is known exactly,
so each step of the chain (:data:`covid_lib.analysis.shortcuts.PROBE_STEPS`: raw, equalised, lung-masked,
lung-cropped, cropped and masked) can be scored on what of it survives:

- :func:`residue_table`: the mean absolute difference between the marked and the unmarked output
  of the same image (grey levels in [0, 1]), over the whole image and inside the mark's pixels
  carried through the chain's geometry; patient-cluster bootstrap intervals.
- :func:`mark_probe`: can a linear probe (:func:`covid_lib.analysis.shortcuts.image_features`, 32x32
  thumbnail + histogram; :func:`covid_lib.analysis.shortcuts.fit_probe`) tell the marked copy of an image
  from the unmarked one? Out-of-fold accuracy from cross-validation grouped by patient (both
  copies of an image, and all images of a patient, in one fold); chance is exactly 0.5.

The CNN side (does a ResNet learn the mark?) is :mod:`covid_lib.runs.planted`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from covid_lib.analysis.shortcuts import DEFAULT_C, PROBE_STEPS, fit_probe, image_features
from covid_lib.data import compose
from covid_lib.metrics import mean_estimate
from covid_lib.preprocess import get_pipeline, load_model
from covid_lib.preprocess.plant import MarkedImages, preprocess_marked_steps


@dataclass
class PlantedArrays:
    """The same rows through each step of the chain, unmarked and marked.

    Attributes:
        rows: the rows, in array order.
        mark: the mark's name.
        unmarked, marked: step -> :class:`~covid_lib.preprocess.plant.MarkedImages`.
    """

    rows: pd.DataFrame
    mark: str
    unmarked: dict[str, MarkedImages]
    marked: dict[str, MarkedImages]

    @property
    def all_ok(self) -> np.ndarray:
        """Rows whose both copies passed every step (every step is compared on the same images)."""
        oks = [v.ok for d in (self.unmarked, self.marked) for v in d.values()]
        return np.logical_and.reduce(oks) if oks else np.ones(len(self.rows), bool)

    @property
    def seconds(self) -> float:
        """Wall time of both passes through the chain (no cache)."""
        return next(iter(self.unmarked.values())).seconds + next(iter(self.marked.values())).seconds


def sample_rows(rows: pd.DataFrame, per_class: int = 40, *, seed: int = 0) -> pd.DataFrame:
    """At most ``per_class`` rows per label, drawn at random (``seed``), in a stable order."""
    parts = [g.sample(min(per_class, len(g)), random_state=seed) for _, g in rows.groupby("label")]
    return pd.concat(parts).sort_values(["label", "source", "image_id"]).reset_index(drop=True)


def planted_arrays(rows: pd.DataFrame, mark: str, steps: dict[str, str] | None = None, *, image_size: int = 144,
                   model=None, device: str = "cpu", read=None) -> PlantedArrays:
    """``rows`` at each step of ``steps`` (name -> pipeline; default :data:`PROBE_STEPS`), without
    and with ``mark`` planted on the raw image; one U-Net pass per copy, shared by the steps
    (``read``: the image reader, default :func:`covid_lib.data.read_image`)."""
    steps = steps or PROBE_STEPS
    pipes = {k: get_pipeline(v, image_size=image_size) for k, v in steps.items()}
    rows = rows.reset_index(drop=True)
    n = len(rows)
    if model is None and any(p.uses_model for p in pipes.values()):
        model = load_model(next(p for p in pipes.values() if p.uses_model), device)
    plain = preprocess_marked_steps(rows, pipes, mark, np.zeros(n, bool), model=model, device=device, read=read)
    marked = preprocess_marked_steps(rows, pipes, mark, np.ones(n, bool), model=model, device=device, read=read)
    return PlantedArrays(rows, mark, plain, marked)


def _estimate_row(values: np.ndarray, groups: np.ndarray, n_boot: int, seed: int, prefix: str) -> dict:
    ok = np.isfinite(values)
    if not ok.any():
        return {prefix: np.nan, f"{prefix}_low": np.nan, f"{prefix}_high": np.nan}
    e = mean_estimate(values[ok], groups=groups[ok], n_boot=n_boot, seed=seed)
    return {prefix: e.value, f"{prefix}_low": e.low, f"{prefix}_high": e.high}


def residue_table(arrays: PlantedArrays, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per step: the mean absolute marked-minus-unmarked difference of the chain's outputs (grey
    levels in [0, 1]) over the whole image (``residue``), inside the mark's pixels (``residue_in_mark``;
    NaN where the step cut the mark away from every image) and outside them (``residue_outside``),
    each with a patient-cluster bootstrap interval, on the rows that passed every step.

    ``mark_share`` is the mean share of the output's pixels that hold the mark.
    """
    keep = arrays.all_ok
    groups = arrays.rows.loc[keep, "group_id"].astype(str).to_numpy()
    out = []
    for step, plain in arrays.unmarked.items():
        a = plain.images[keep].astype(np.float32) / 255
        b = arrays.marked[step].images[keep].astype(np.float32) / 255
        region = arrays.marked[step].regions[keep]
        diff = np.abs(b - a)
        n_in, n_out = region.sum(axis=(1, 2)), (~region).sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            inside = np.where(n_in > 0, (diff * region).sum(axis=(1, 2)) / n_in, np.nan)
            outside = np.where(n_out > 0, (diff * ~region).sum(axis=(1, 2)) / n_out, np.nan)
        out.append({"step": step, "pipeline": PROBE_STEPS.get(step, step), "mark": arrays.mark, "n": int(keep.sum()),
                    "mark_share": float(region.mean()), "images_with_mark_left": int((n_in > 0).sum()),
                    **_estimate_row(diff.mean(axis=(1, 2)), groups, n_boot, seed, "residue"),
                    **_estimate_row(inside, groups, n_boot, seed, "residue_in_mark"),
                    **_estimate_row(outside, groups, n_boot, seed, "residue_outside")})
    return pd.DataFrame(out)


def mark_probe(arrays: PlantedArrays, *, folds: int = 5, n_boot: int = 2000, seed: int = 0, Cs=DEFAULT_C,
               side: int = 32, bins: int = 32) -> pd.DataFrame:
    """Per step: can a linear probe tell a marked copy from an unmarked one?

    Each kept image gives two examples (unmarked: 0, marked: 1) with the same patient group;
    ``folds``-fold cross-validation grouped by patient gives an out-of-fold prediction for every
    example, and ``accuracy`` is their share correct, with a patient-cluster bootstrap interval
    (chance 0.5: the classes are balanced by construction).
    """
    keep = arrays.all_ok
    rows = arrays.rows[keep].reset_index(drop=True)
    g = rows["group_id"].astype(str).to_numpy()
    groups = np.concatenate([g, g])
    y = np.r_[np.zeros(len(rows), int), np.ones(len(rows), int)]
    k = max(2, min(folds, len(np.unique(g))))
    out = []
    for step, plain in arrays.unmarked.items():
        X = image_features(np.concatenate([plain.images[keep], arrays.marked[step].images[keep]]), side=side,
                           bins=bins)
        pred = np.zeros(len(y), int)
        for tr, te in GroupKFold(k).split(X, y, groups):
            pred[te] = fit_probe(X[tr], y[tr], groups[tr], Cs=Cs, seed=seed).predict(X[te])
        acc = mean_estimate((pred == y).astype(float), groups=groups, n_boot=n_boot, seed=seed)
        out.append({"step": step, "pipeline": PROBE_STEPS.get(step, step), "mark": arrays.mark,
                    "n images": int(len(rows)), "patients": int(len(np.unique(g))), "folds": k,
                    "accuracy": acc.value, "accuracy_low": acc.low, "accuracy_high": acc.high,
                    "interval": acc.method, "chance": 0.5})
    return pd.DataFrame(out)


def planted_summary(rows: pd.DataFrame, marks, steps: dict[str, str] | None = None, *, image_size: int = 144,
                    n_boot: int = 2000, seed: int = 0, Cs=DEFAULT_C, model=None, device: str = "cpu"
                    ) -> tuple[pd.DataFrame, dict[str, PlantedArrays]]:
    """:func:`residue_table` and :func:`mark_probe` of every mark, joined on (mark, step); also
    returns the arrays (for figures). Columns: ``mark, step, pipeline, n``, the residues and the
    probe's accuracy, each with ``_low`` / ``_high``, and ``seconds`` (the chain, both copies)."""
    if model is None:
        model = load_model(get_pipeline("paper"), device)
    tables, arrays = [], {}
    for mark in marks:
        arr = planted_arrays(rows, mark, steps, image_size=image_size, model=model, device=device)
        res = residue_table(arr, n_boot=n_boot, seed=seed)
        probe = mark_probe(arr, n_boot=n_boot, seed=seed, Cs=Cs).drop(columns=["pipeline"])
        tables.append(res.merge(probe, on=["mark", "step"]).assign(seconds=arr.seconds))
        arrays[mark] = arr
    return pd.concat(tables, ignore_index=True), arrays


def data_rows(composition: str, data_root: str | os.PathLike | None = None, *, per_class: int = 40,
              seed: int = 0) -> pd.DataFrame:
    """The residue/probe sample: at most ``per_class`` images per label of a Table I composition."""
    return sample_rows(compose(composition, data_root, seed=seed), per_class, seed=seed)
