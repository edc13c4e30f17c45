"""Shortcuts made visible without training a CNN: what a linear probe on tiny features can read.

Tartaglione et al. (Sec. III-B) argue that their chain (equalisation, U-Net lung mask, blur)
removes "biases" of the source; Ben Ahmed et al. 2021 show that a network still tells the sources
apart. Two probes test this with scikit-learn logistic regression on features small enough to
compute in seconds:

- :func:`source_probe`: which source (cohen, hannover, kermany, nih) an image comes from, from a
  32x32 down-sampled image and a 32-bin grey-level histogram (:func:`image_features`), at each
  step of the chain (:data:`PROBE_STEPS`).
- :func:`mask_baseline`: COVID+ or not from the predicted lung mask alone
  (:func:`mask_features`): how much the segmentation itself carries the label.

Arrays come from the pre-processing cache where it holds them (:func:`chain_arrays`); images it
lacks go through the chain once, with one U-Net pass shared by every step.

Example:
    >>> import numpy as np
    >>> image_features(np.zeros((2, 64, 64), np.uint8), side=4, bins=2).shape
    (2, 18)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from covid_lib.data import compose, load_source
from covid_lib.data.compose import at_hannover
from covid_lib.data.sources import ImageReadError
from covid_lib.metrics import Estimate, binary_metrics
from covid_lib.preprocess import (PreprocessError, cache_path, finish_chain, get_pipeline, iter_image_batches,
                                  load_model, preprocess_source, resize)
from covid_lib.stats import bootstrap_replicates, percentile_interval

#: The chain's steps the source probe compares, as named pipelines of :data:`covid_lib.preprocess.PIPELINES`.
PROBE_STEPS: dict[str, str] = {"raw": "none", "equalised": "equalize", "lung-masked (paper)": "paper",
                               "lung-cropped": "crop", "cropped + masked": "paper_crop"}
PROBE_SOURCES: tuple[str, ...] = ("cohen", "hannover", "kermany", "nih")
#: The L2 penalties (inverse strength, on standardised features) grouped cross-validation may try;
#: the probes' default is the single, strongly regularised ``C = 0.01`` (no search, to stay cheap).
C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
DEFAULT_C: tuple[float, ...] = (0.01,)


# ------------------------------------------------------------------------------------------ arrays
@dataclass
class ChainArrays:
    """Images and lung masks of the same rows at several steps of the chain.

    Attributes:
        rows: the requested rows (``source``, ``image_id``, ...), in array order.
        images: step -> ``uint8`` (N, S, S); a rejected row holds zeros.
        masks: step -> ``bool`` (N, S, S) (all True where the step uses no U-Net).
        ok: step -> ``bool`` (N,): the row passed the step.
        rejections: ``step, source, image_id, reason`` of each rejected row.
        from_cache: step -> number of rows read from the cache (the rest were computed here).
    """

    rows: pd.DataFrame
    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    ok: dict[str, np.ndarray]
    rejections: pd.DataFrame
    from_cache: dict[str, int] = field(default_factory=dict)

    @property
    def all_ok(self) -> np.ndarray:
        """Rows that passed every step (compare steps on the same images)."""
        return np.logical_and.reduce(list(self.ok.values())) if self.ok else np.ones(len(self.rows), bool)


def chain_arrays(rows: pd.DataFrame, steps: dict[str, str] | None = None, *, image_size: int = 144,
                 data_root: str | os.PathLike | None = None, use_cache: bool = True, model=None,
                 device: str = "cpu", batch_size: int = 32) -> ChainArrays:
    """``rows`` (manifest rows with ``source``, ``image_id``, ``image_path``) at each step.

    A (source, step) whose cache file exists is read from it (never written); the remaining rows
    are read once and, when a step needs it, pass the lung U-Net once for all steps.
    """
    steps = steps or PROBE_STEPS
    rows = rows.reset_index(drop=True)
    n, s = len(rows), image_size
    pipes = {k: get_pipeline(v, image_size=s).resolved() for k, v in steps.items()}
    images = {k: np.zeros((n, s, s), np.uint8) for k in steps}
    masks = {k: np.ones((n, s, s), bool) for k in steps}
    ok = {k: np.zeros(n, bool) for k in steps}
    todo = {k: np.ones(n, bool) for k in steps}
    rejected, cached = [], {k: 0 for k in steps}
    for step, p in pipes.items():
        for source, sub in rows.groupby("source"):
            if not use_cache or not cache_path(source, p, data_root).is_file():
                continue
            imgs, index, rej, msk = preprocess_source(source, p, data_root, return_masks=True)
            where = pd.Series(np.arange(len(index)), index=index["image_id"].astype(str))
            where = where[~where.index.duplicated()]
            reasons = dict(zip(rej["image_id"].astype(str), rej["reason"]))
            for i, image_id in zip(sub.index, sub["image_id"].astype(str)):
                if image_id in where.index:
                    j = where[image_id]
                    images[step][i], masks[step][i], ok[step][i] = imgs[j], msk[j], True
                    todo[step][i] = False
                    cached[step] += 1
                elif image_id in reasons:
                    rejected.append({"step": step, "source": source, "image_id": image_id,
                                     "reason": reasons[image_id]})
                    todo[step][i] = False
    need = np.logical_or.reduce(list(todo.values()))
    if need.any():
        uses_model = any(pipes[k].uses_model and todo[k].any() for k in steps)
        if uses_model and model is None:
            model = load_model(next(p for p in pipes.values() if p.uses_model), device)

        recs = rows[need].assign(_row=np.flatnonzero(need)).to_dict("records")
        for batch in iter_image_batches(recs, model if uses_model else None, batch_size=batch_size,
                                        device=device, catch=(ImageReadError, PreprocessError)):
            for rec, err in batch.failed:
                i = rec["_row"]
                rejected += [{"step": k, "source": rec["source"], "image_id": rec["image_id"], "reason": str(err)}
                             for k in steps if todo[k][i]]
            for rec, img, prob in batch.items():
                i = rec["_row"]
                for k, p in pipes.items():
                    if not todo[k][i]:
                        continue
                    try:
                        res = finish_chain(img, p, prob)
                    except PreprocessError as err:
                        rejected.append({"step": k, "source": rec["source"], "image_id": rec["image_id"],
                                         "reason": str(err)})
                        continue
                    images[k][i] = np.round(res.image * 255).astype(np.uint8)
                    if res.mask is not None:
                        masks[k][i] = res.mask
                    ok[k][i] = True
    rej = pd.DataFrame(rejected, columns=["step", "source", "image_id", "reason"])
    return ChainArrays(rows, images, masks, ok, rej, cached)


# ---------------------------------------------------------------------------------------- features
def image_features(images: np.ndarray, *, side: int = 32, bins: int = 32) -> np.ndarray:
    """What the source probe sees: each image down-sampled to ``side`` x ``side`` (antialiased
    bilinear, grey levels / 255) and its ``bins``-bin grey-level histogram (shares of all pixels,
    background included), concatenated: ``(N, side**2 + bins)``."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
    small = np.stack([resize(im, (side, side)).astype(np.float32).ravel() / 255.0 for im in images]) \
        if len(images) else np.zeros((0, side * side), np.float32)
    edges = np.linspace(0, 256, bins + 1)
    hist = np.stack([np.histogram(im, bins=edges)[0] / im.size for im in images]) \
        if len(images) else np.zeros((0, bins))
    return np.hstack([small, hist]).astype(np.float32)


MASK_SHAPE_FEATURES = ("area", "left_area", "right_area", "asymmetry", "top", "bottom", "left", "right",
                       "height", "width", "centroid_row", "centroid_col")


def mask_features(masks: np.ndarray, *, side: int = 32) -> np.ndarray:
    """What the mask baseline sees: the binary lung mask down-sampled to ``side`` x ``side``
    (share of lung per cell) and :data:`MASK_SHAPE_FEATURES` (areas as shares of the image, left
    and right of the image's vertical midline, bounding box and centroid as fractions of the side).

    Returns ``(N, side**2 + 12)``; an empty mask gives zeros for its shape features.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    n, h, w = masks.shape
    small = np.stack([resize(m.astype(np.float32), (side, side)).ravel() for m in masks]) \
        if n else np.zeros((0, side * side))
    shape = np.zeros((n, len(MASK_SHAPE_FEATURES)))
    for i, m in enumerate(masks):
        if not m.any():
            continue
        r, c = np.nonzero(m)
        area, left = m.mean(), m[:, : w // 2].sum() / m.size
        right = area - left
        shape[i] = [area, left, right, (left - right) / area, r.min() / h, (r.max() + 1) / h, c.min() / w,
                    (c.max() + 1) / w, (r.max() + 1 - r.min()) / h, (c.max() + 1 - c.min()) / w, r.mean() / h,
                    c.mean() / w]
    return np.hstack([small, shape]).astype(np.float32)


# ------------------------------------------------------------------------------------- classifier
def fit_probe(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, Cs=DEFAULT_C, folds: int = 5, seed: int = 0):
    """Standardise, then L2 logistic regression (multinomial for several classes); with several
    ``Cs`` (e.g. :data:`C_GRID`) the one of best ``folds``-fold cross-validation grouped by patient
    (balanced accuracy for several classes, AUC for two). Returns the fitted scikit-learn pipeline
    (``.C_`` holds the ``C`` used)."""
    y, groups = np.asarray(y), np.asarray(groups)
    if len(Cs) == 1:
        model = _model(Cs[0], seed).fit(X, y)
        model.C_ = Cs[0]
        return model
    binary = len(np.unique(y)) == 2
    folds = max(2, min(folds, len(np.unique(groups))))
    best, best_score = Cs[0], -np.inf
    for C in Cs:
        scores = []
        for tr, va in GroupKFold(folds).split(X, y, groups):
            if len(np.unique(y[tr])) < len(np.unique(y)) or (binary and len(np.unique(y[va])) < 2):
                continue
            m = _model(C, seed).fit(X[tr], y[tr])
            scores.append(_score(m, X[va], y[va], binary))
        if scores and np.mean(scores) > best_score:
            best, best_score = C, float(np.mean(scores))
    model = _model(best, seed).fit(X, y)
    model.C_ = best
    return model


def _model(C: float, seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))


def _score(model, X, y, binary: bool) -> float:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    if binary:
        return roc_auc_score(y, model.predict_proba(X)[:, 1])
    return balanced_accuracy_score(y, model.predict(X))


def multiclass_accuracy(y_true, y_pred, *, groups=None, n_boot: int = 2000, seed: int = 0,
                        alpha: float = 0.05) -> dict[str, Estimate]:
    """Accuracy and balanced accuracy (mean per-class recall) of a K-class prediction, each with a
    percentile bootstrap interval that resamples whole patients when ``groups`` is given.

    Example:
        >>> m = multiclass_accuracy(["a", "b", "b", "c"], ["a", "b", "c", "c"], n_boot=200)
        >>> round(m["accuracy"].value, 2), round(m["balanced_accuracy"].value, 2)
        (0.75, 0.83)
    """
    y, p = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length, got {y.shape} and {p.shape}")
    classes = np.unique(y)
    hit = (y == p).astype(float)
    onehot = (y[:, None] == classes[None, :]).astype(float)

    def statistic(w: np.ndarray) -> np.ndarray:
        acc = (w @ hit) / w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = (w @ (onehot * hit[:, None])) / (w @ onehot)
        return np.column_stack([acc, recall.mean(axis=1)])  # NaN when a class was not drawn

    point = statistic(np.ones((1, len(y))))[0]
    reps = bootstrap_replicates(statistic, len(y), groups=groups, n_boot=n_boot, seed=seed)
    units = len(set(groups)) if groups is not None else len(y)
    method = f"{'cluster' if units < len(y) else 'percentile'} bootstrap (n_boot={n_boot}, {units} groups)"
    out = {}
    for j, name in enumerate(("accuracy", "balanced_accuracy")):
        low, high, n_ok = percentile_interval(reps[:, j], alpha)
        out[name] = Estimate(float(point[j]), low, high, method,
                             "" if n_ok == n_boot else f"{n_boot - n_ok} resamples lacked a class")
    return out


# ------------------------------------------------------------------------------------------ probes
@dataclass
class ProbeResult:
    """What :func:`source_probe` found: one row per step in ``table``, the test predictions
    (``step, source, image_id, group_id, predicted``) and a confusion matrix per step (rows: the
    true source, columns: the predicted one, counts of test images)."""

    table: pd.DataFrame
    predictions: pd.DataFrame
    confusion: dict[str, pd.DataFrame]


def _train_test(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    split = rows["split"].to_numpy()
    return np.isin(split, ("train", "val")), split == "test"


def source_probe(arrays: ChainArrays, *, n_boot: int = 2000, seed: int = 0, side: int = 32,
                 bins: int = 32, Cs=DEFAULT_C) -> ProbeResult:
    """Which source each test image comes from, per step of the chain (paper Sec. III-B's claim
    that the chain removes the source, tested).

    Trained on the train + val patients of :func:`covid_lib.data.global_splits`, scored on its
    test patients, on the rows that passed *every* step (the same images at each step). Chance
    is the majority source's share of the test images for accuracy, 1/K for balanced accuracy.
    """
    keep = arrays.all_ok
    rows = arrays.rows[keep].reset_index(drop=True)
    y, groups = rows["source"].astype(str).to_numpy(), rows["group_id"].astype(str).to_numpy()
    train, test = _train_test(rows)
    if not train.any() or not test.any():
        raise ValueError("source_probe needs rows in the train/val and the test splits")
    classes = sorted(set(y))
    chance = pd.Series(y[test]).value_counts(normalize=True).max()
    table, preds, confusion = [], [], {}
    for step, images in arrays.images.items():
        X = image_features(images[keep], side=side, bins=bins)
        model = fit_probe(X[train], y[train], groups[train], Cs=Cs, seed=seed)
        pred = model.predict(X[test])
        m = multiclass_accuracy(y[test], pred, groups=groups[test], n_boot=n_boot, seed=seed)
        table.append({"step": step, "n train": int(train.sum()), "n test": int(test.sum()),
                      "test patients": len(set(groups[test])), "C": model.C_,
                      **{f"{k}{s}": getattr(e, a) for k, e in m.items()
                         for s, a in (("", "value"), ("_low", "low"), ("_high", "high"))},
                      "chance accuracy": chance, "chance balanced accuracy": 1 / len(classes),
                      "interval": m["accuracy"].method})
        preds.append(rows.loc[test, ["source", "image_id", "group_id"]].assign(step=step, predicted=pred))
        confusion[step] = pd.crosstab(pd.Series(y[test], name="true source"),
                                      pd.Series(pred, name="predicted")).reindex(
            index=classes, columns=classes, fill_value=0)
    return ProbeResult(pd.DataFrame(table), pd.concat(preds, ignore_index=True), confusion)


def mask_baseline(compositions, *, data_root: str | os.PathLike | None = None, seed: int = 0,
                  image_size: int = 144, n_boot: int = 2000, side: int = 32, model=None,
                  Cs=DEFAULT_C) -> pd.DataFrame:
    """COVID+ from the predicted lung mask alone (:func:`mask_features`), per Table I composition.

    For each composition (:func:`covid_lib.data.compose`) a logistic regression is trained on the
    masks of its train + val images (the paper's chain, ``paper`` pipeline) and scored on its
    test images; AUC with a patient-cluster bootstrap interval (DeLong where each patient has one
    test image). A high AUC means the segmentation itself carries the label.
    """
    composed = {name: compose(name, data_root, seed=seed) for name in compositions}
    union = pd.concat(composed.values()).drop_duplicates(["source", "image_id"]).reset_index(drop=True)
    arr = chain_arrays(union, {"mask": "paper"}, image_size=image_size, data_root=data_root, model=model)
    where = pd.Series(np.arange(len(union)), index=pd.MultiIndex.from_frame(union[["source", "image_id"]]))
    features = mask_features(arr.masks["mask"], side=side)
    out = []
    for name, rows in composed.items():
        pos = where.loc[list(zip(rows["source"], rows["image_id"]))].to_numpy()
        keep = arr.ok["mask"][pos]
        rows, X = rows[keep].reset_index(drop=True), features[pos[keep]]
        y, groups = rows["label"].astype(int).to_numpy(), rows["group_id"].astype(str).to_numpy()
        train, test = _train_test(rows)
        fitted = fit_probe(X[train], y[train], groups[train], Cs=Cs, seed=seed)
        p = fitted.predict_proba(X[test])[:, 1]
        m = binary_metrics(y[test], p, groups=groups[test], n_boot=n_boot, seed=seed)
        out.append({"composition": name, "n train": int(train.sum()),
                    "test COVID+/COVID-": f"{int(y[test].sum())}/{int((1 - y[test]).sum())}",
                    "test sources": ", ".join(sorted(set(rows.loc[test, "source"]))),
                    "rejected by the chain": int((~keep).sum()), "C": fitted.C_,
                    "auc": m.auc.value, "auc_low": m.auc.low, "auc_high": m.auc.high, "interval": m.auc.method})
    return pd.DataFrame(out)


def probe_rows(splits: pd.DataFrame, *, per_source: int | None = 150, sources=PROBE_SOURCES,
               seed: int = 0) -> pd.DataFrame:
    """The source probe's images: frontal images of ``sources``, Cohen rows that are Hannover
    images (same ``image_id``, or located at Hannover Medical School) left out, then at most
    ``per_source`` images per source drawn at random (``seed``), keeping the patient splits."""
    m = splits[splits["source"].isin(sources) & splits["frontal"].astype(bool)]
    hannover_ids = set(m.loc[m["source"] == "hannover", "image_id"])
    m = m[~at_hannover(m) & ~((m["source"] == "cohen") & m["image_id"].isin(hannover_ids))]
    if per_source is not None:
        m = pd.concat([g.sample(min(per_source, len(g)), random_state=seed) for _, g in m.groupby("source")])
    return m.sort_values(["source", "image_id"]).reset_index(drop=True)


# ----------------------------------------------------------------------------------- the two copies
#: Steps at which :func:`copy_probe` tells the two copies of the ChestXRay set apart.
COPY_STEPS: dict[str, str] = {"raw": "none", "lung-masked (paper)": "paper"}


def copy_rows(data_root: str | os.PathLike | None = None, *, limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The radiographs present in both copies of the ChestXRay set (``kermany``, original
    resolution; ``kermany_full``, squashed to 224x224 JPEG; same file name and patient), both rows
    of each, with ``copy`` (0 = kermany, 1 = kermany_full), ``pair`` and the original aspect ratio
    (width / height of the file before either copy was made, from ``kermany``'s manifest)."""
    base = load_source("kermany", data_root).manifest
    full = load_source("kermany_full", data_root).manifest
    both = base.merge(full[["image_id", "patient_id"]], on=["image_id", "patient_id"])["image_id"]
    if limit is not None and len(both) > limit:
        both = both.sample(limit, random_state=seed)
    keep = set(both)
    rows = pd.concat([base[base["image_id"].isin(keep)].assign(copy=0),
                      full[full["image_id"].isin(keep)].assign(copy=1)], ignore_index=True)
    aspect = (base.set_index("image_id")["orig_width"] / base.set_index("image_id")["orig_height"]).astype(float)
    rows["orig_aspect"] = rows["image_id"].map(aspect)
    rows["pair"] = rows["image_id"]
    rows["group_id"] = rows["patient_id"]
    return rows.sort_values(["pair", "copy"]).reset_index(drop=True)


def copy_probe(rows: pd.DataFrame, *, data_root: str | os.PathLike | None = None, steps: dict[str, str] | None = None,
               image_size: int = 144, folds: int = 5, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Can a linear probe tell the two copies of one radiograph apart (issue 17)? Per step of the
    chain, out-of-fold AUC of copy 1 (``kermany_full``) against copy 0 (``kermany``) from
    :func:`image_features`, ``folds``-fold cross-validation grouped by patient (both copies of a
    radiograph, and all of a patient's radiographs, in one fold), with a patient-cluster interval.
    An AUC near 1 means the encoding is itself a feature a model can use when both copies feed
    it: never mix them in one experiment (the pre-training uses only ``kermany_full``)."""
    arrays = chain_arrays(rows, steps or COPY_STEPS, image_size=image_size, data_root=data_root)
    keep = arrays.all_ok
    r = arrays.rows[keep].reset_index(drop=True)
    y, groups = r["copy"].to_numpy(), r["group_id"].astype(str).to_numpy()
    out = []
    for step, images in arrays.images.items():
        X = image_features(images[keep])
        score = np.zeros(len(y))
        for tr, te in GroupKFold(max(2, min(folds, len(set(groups))))).split(X, y, groups):
            score[te] = _model(DEFAULT_C[0], seed).fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]
        auc = binary_metrics(y, score, groups=groups, n_boot=n_boot, seed=seed).auc
        out.append({"step": step, "radiographs": int(r["pair"].nunique()), "patients": len(set(groups)),
                    "auc": auc.value, "auc_low": auc.low, "auc_high": auc.high, "interval": auc.method})
    return pd.DataFrame(out)
