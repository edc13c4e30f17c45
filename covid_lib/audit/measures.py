"""The audit's measurements on a user's manifest: the book's shortcut checks, one tidy table each.

Every measure asks one question, "can X predict the label?", and answers it with the library's
own tools: the confounder factors of :mod:`covid_lib.data.confounders`, the metadata baseline of
:mod:`covid_lib.analysis.metadata_baseline`, the split audit of :mod:`covid_lib.data.splits`, the
image-statistics and mask probes of :mod:`covid_lib.analysis.shortcuts`. Each row of a measure
table has ``section, measure, target, metric, value, low, high, chance, n_images, n_patients``:
the score (AUC for a binary label, one-vs-rest macro AUC for several classes, balanced accuracy
for the source), its 95% interval over patients, and the score of a predictor that knows nothing.
The interval is the percentile bootstrap that resamples whole patients, except for a binary AUC
whose scored patients have one image each: every AUC, here as in the chapters reporting the same
numbers (chapter 03's metadata baselines, chapter 10's probes), comes from
:func:`covid_lib.metrics.auc_estimate`, the rule of :func:`covid_lib.metrics.binary_metrics`,
which gives DeLong's interval (logit scale) then (the row's note says so, :func:`interval_note`).

How a score is obtained: when the manifest has a ``split`` with test rows, the predictor is fitted
on train + val and scored on test (the book's layout); otherwise out-of-fold over
:data:`FOLDS` folds grouped by patient (no patient in both a training and a scoring fold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold
from tqdm.std import tqdm

from covid_lib.analysis import metadata_baseline as mb
from covid_lib.analysis.shortcuts import chain_arrays, fit_probe, image_features, mask_features, multiclass_accuracy
from covid_lib.audit.manifest import AuditManifest
from covid_lib.data.confounders import metadata_features
from covid_lib.data.splits import audit_splits
from covid_lib.metrics import auc_estimate, macro_auc
from covid_lib.stats import wilson_interval

FOLDS = 5
#: A pixel probe needs at least this many images that passed its step of the chain.
MIN_IMAGES = 10
#: Up to this many distinct original sizes, the "image size" factor uses each size as a level.
MAX_EXACT_SIZES = 12
MEASURE_COLUMNS = ["section", "measure", "target", "metric", "value", "low", "high", "chance", "n_images",
                   "n_patients", "note"]
#: The factors of section 1 (display names of :func:`covid_lib.data.confounders.metadata_features`).
FACTORS: dict[str, str] = {"source": "source", "view": "view", "era": "era", "age group": "age group",
                           "sex": "sex_level", "file format": "format", "image size": "size"}
#: The two chain steps of the image probe: the raw image and the paper's chain (lung-masked).
PROBE_STEPS: dict[str, str] = {"raw": "none", "after the chain": "paper"}


@dataclass(frozen=True)
class AuditSettings:
    """How hard the audit works: images for the pixel probes, their size, bootstrap resamples."""

    image_size: int
    side: int
    bins: int
    max_images: int
    n_boot: int
    #: ``--model``: images the model scores (whole patients), and of them those with a saliency map.
    model_images: int = 1000
    saliency_images: int = 200


#: ``smoke``: seconds, for tests; ``cpu``: a few minutes on 2 cores for ~1000 images.
SETTINGS: dict[str, AuditSettings] = {
    "smoke": AuditSettings(image_size=64, side=16, bins=16, max_images=120, n_boot=200, model_images=60,
                           saliency_images=24),
    "cpu": AuditSettings(image_size=144, side=32, bins=32, max_images=1000, n_boot=1000, model_images=1000,
                         saliency_images=200),
    "paper": AuditSettings(image_size=224, side=32, bins=32, max_images=5000, n_boot=2000, model_images=5000,
                           saliency_images=1000),
}


def get_settings(profile: str) -> AuditSettings:
    if profile not in SETTINGS:
        raise ValueError(f"unknown audit profile {profile!r}; choose from {', '.join(SETTINGS)}")
    return SETTINGS[profile]


# --------------------------------------------------------------------------------- scoring helpers
def _folds(rows: pd.DataFrame, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, score) index pairs: train+val -> test when the manifest has a test split, else grouped folds."""
    split = rows["split"].to_numpy()
    if (split == "test").any() and np.isin(split, ["train", "val"]).any():
        return [(np.flatnonzero(split != "test"), np.flatnonzero(split == "test"))]
    groups = rows["group_id"].astype(str).to_numpy()
    k = max(2, min(FOLDS, len(set(groups))))
    order = np.random.default_rng(seed).permutation(len(rows))  # GroupKFold is deterministic: shuffle rows first
    return [(order[a], order[b]) for a, b in GroupKFold(k).split(order, groups=groups[order])]


def cross_scores(rows: pd.DataFrame, y: np.ndarray, fit, predict, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``(N, K)`` of the scored rows and a mask of which rows were scored.

    ``fit(train_index) -> model`` and ``predict(model, index) -> (n, K)``; a fold whose training
    rows lack a class leaves its rows unscored.
    """
    k = int(y.max()) + 1
    probs, scored = np.full((len(rows), k), np.nan), np.zeros(len(rows), bool)
    for tr, te in _folds(rows, seed):
        if len(np.unique(y[tr])) < k:
            continue
        model = fit(tr)
        p = np.asarray(predict(model, te))
        cols = getattr(model, "classes_", np.arange(p.shape[1]))
        probs[np.ix_(te, np.asarray(cols, int))] = p
        scored[te] = True
    return np.nan_to_num(probs[scored]), scored


def label_score(y, probs, groups, *, n_boot: int, seed: int = 0) -> tuple[str, float, float, float]:
    """``(metric, value, low, high)``: AUC (binary) with its interval by the book's one rule
    (:func:`covid_lib.metrics.auc_estimate`: the patient bootstrap, DeLong when each patient has one
    image; NaN when a class, or every row, is missing), or macro AUC with its patient-cluster interval."""
    y = np.asarray(y, int)
    if probs.shape[1] == 2:
        if not y.size:
            return "AUC", np.nan, np.nan, np.nan
        est = auc_estimate(y, probs[:, 1], groups=np.asarray(groups).astype(str), n_boot=n_boot, seed=seed)
        return "AUC", est.value, est.low, est.high
    est = macro_auc(y, probs, groups=np.asarray(groups).astype(str), n_boot=n_boot, seed=seed)
    return "macro AUC", est.value, est.low, est.high


def interval_note(groups, n_classes: int) -> str:
    """Which interval a label row carries where it is not the patient bootstrap: DeLong's, for a
    binary AUC whose scored patients have one image each (:func:`label_score`)."""
    one_each = len(set(np.asarray(groups).astype(str))) == len(groups)
    return "DeLong interval (one image per patient)" if n_classes == 2 and one_each and len(groups) else ""


def _notes(*notes: str) -> str:
    return "; ".join(filter(None, notes))


def _row(section: str, measure: str, target: str, metric: str, value, low, high, chance, rows: pd.DataFrame,
         note: str = "") -> dict:
    return {"section": section, "measure": measure, "target": target, "metric": metric, "value": float(value),
            "low": float(low), "high": float(high), "chance": float(chance), "n_images": len(rows),
            "n_patients": int(rows["patient_id"].nunique()), "note": note}


def _probe_label(rows: pd.DataFrame, X: np.ndarray, *, settings: AuditSettings, seed: int) -> tuple:
    """Label from features ``X`` with the book's probe (:func:`fit_probe`); returns label_score's
    tuple + scored rows."""
    y, groups = rows["label"].to_numpy(int), rows["group_id"].astype(str).to_numpy()
    probs, scored = cross_scores(rows, y, lambda tr: fit_probe(X[tr], y[tr], groups[tr], seed=seed),
                                 lambda m, te: m.predict_proba(X[te]), seed=seed)
    return (*label_score(y[scored], probs, groups[scored], n_boot=settings.n_boot, seed=seed),
            rows[scored])


# ------------------------------------------------------------------------------ 1. metadata factors
def factor_levels(rows: pd.DataFrame) -> pd.DataFrame:
    """The display factors of each row (source, view, era, age group, sex, file format, image size)."""
    feats = metadata_features(rows)
    out = pd.DataFrame({name: feats[col] for name, col in FACTORS.items() if col in feats}, index=rows.index)
    out["source"] = rows["source"].astype(str)
    out["view"] = rows["view"].astype(object).where(rows["view"].notna(), "unknown")
    exact = rows["orig_width"].astype(str) + "x" + rows["orig_height"].astype(str)
    if exact.nunique() <= MAX_EXACT_SIZES:  # few distinct sizes: each its own level (the bins may hide them)
        out["image size"] = exact
    return out.astype(str)


def factor_counts(manifest: AuditManifest) -> pd.DataFrame:
    """Images per factor, level and class: ``factor, level, <class...>, total``."""
    rows, levels = manifest.rows, factor_levels(manifest.rows)
    parts = []
    for factor in levels:
        t = pd.crosstab(levels[factor], rows["label_name"]).reindex(columns=manifest.classes, fill_value=0)
        t.columns.name = None
        t.insert(0, "factor", factor)
        parts.append(t.rename_axis("level").reset_index())
    out = pd.concat(parts, ignore_index=True)
    out["total"] = out[manifest.classes].sum(axis=1)
    return out


def factor_associations(manifest: AuditManifest, *, settings: AuditSettings, seed: int = 0) -> pd.DataFrame:
    """Section 1: each factor with two or more levels alone (one-hot, the book's probe) predicting the label."""
    rows, levels = manifest.rows, factor_levels(manifest.rows)
    out = []
    for factor in levels:
        if levels[factor].nunique() < 2:
            continue
        X = pd.get_dummies(levels[factor]).to_numpy(float)
        metric, value, low, high, used = _probe_label(rows, X, settings=settings, seed=seed)
        out.append(_row("1 metadata", factor, "label", metric, value, low, high, 0.5, used,
                        _notes(f"{levels[factor].nunique()} levels",
                               interval_note(used["group_id"], rows["label"].nunique()))))
    return pd.DataFrame(out, columns=MEASURE_COLUMNS)


# ---------------------------------------------------------------------------- 2. metadata baseline
def metadata_baseline(manifest: AuditManifest, *, settings: AuditSettings, seed: int = 0) -> pd.DataFrame:
    """Section 2: the book's metadata-only baseline (:func:`covid_lib.analysis.metadata_baseline.fit_baseline`)
    without the by-construction label proxies (headline) and with them (year, missing-value flags)."""
    rows = manifest.rows
    y, groups = rows["label"].to_numpy(int), rows["group_id"].astype(str).to_numpy()
    out = []
    for name, groups_used, flags, note in (
            ("metadata baseline", mb.HEADLINE_GROUPS, False, "view, age, sex, file format, image size"),
            ("metadata baseline + label proxies", None, True,
             f"adds {', '.join(mb.LABEL_PROXIES)}: label proxies by construction in the book")):
        def fit(tr, g=groups_used, f=flags):
            return mb.fit_baseline(rows.iloc[tr], model="logistic", seed=seed, groups=g, missing_flags=f)

        probs, scored = cross_scores(rows, y, fit, lambda m, te: mb.predict_baseline_proba(m, rows.iloc[te]),
                                     seed=seed)
        metric, value, low, high = label_score(y[scored], probs, groups[scored], n_boot=settings.n_boot, seed=seed)
        out.append(_row("2 metadata baseline", name, "label", metric, value, low, high, 0.5, rows[scored],
                        _notes(note, interval_note(groups[scored], rows["label"].nunique()))))
    return pd.DataFrame(out, columns=MEASURE_COLUMNS)


# -------------------------------------------------------------------------- 3. leakage, duplicates
def leakage(manifest: AuditManifest, *, progress: bool = False, hashes: pd.DataFrame | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Section 3: patients in two splits, exact and near-duplicate images (the book's
    :func:`covid_lib.data.splits.audit_splits`, hashing afresh: nothing is cached; ``hashes``:
    the rows' hashes computed before, as :func:`covid_lib.data.dedup.image_hashes` gives them, e.g.
    for the same images under other splits in ``scripts/audit_validation.py``).

    Returns the measure rows (shares of test images with a duplicate, or patient, in train/val,
    Wilson intervals; without splits, the share of images with a duplicate of another label) and
    every duplicate pair.
    """
    rows = manifest.rows.assign(source=manifest.rows["source"].astype(str))
    audit = audit_splits(rows, raise_on_leak=False, progress=progress, cache=False, hashes=hashes)
    d = audit.duplicates.copy()
    label = dict(zip(zip(rows["source"], rows["image_id"]), rows["label_name"]))
    d["label_a"] = [label[k] for k in zip(d["source_a"], d["image_id_a"])]
    d["label_b"] = [label[k] for k in zip(d["source_b"], d["image_id_b"])]
    out = []
    if manifest.has_test_split:
        test = rows[rows["split"] == "test"]
        fit_patients = set(rows.loc[rows["split"] != "test", "patient_id"])
        shared = test["patient_id"].isin(fit_patients)
        lo, hi = wilson_interval(int(shared.sum()), len(test))
        out.append(_row("3 leakage", "test images whose patient is also in train/val", "split", "share",
                        shared.mean(), lo, hi, 0.0, test, f"{len(audit.patient_leaks)} patients in two splits"))
        for kind in ("exact", "near"):
            across = d[(d["kind"] == kind) & d["across_splits"] & ((d["split_a"] == "test") | (d["split_b"] == "test"))]
            ids = set(across.loc[across["split_a"] == "test", "image_id_a"]) | \
                set(across.loc[across["split_b"] == "test", "image_id_b"])
            n = int(test["image_id"].isin(ids).sum())
            lo, hi = wilson_interval(n, len(test))
            out.append(_row("3 leakage", f"test images with an {kind} duplicate in train/val".replace("an near", "a near"),
                            "split", "share", n / len(test), lo, hi, 0.0, test, f"{len(across)} pairs"))
    conflict = d[d["label_a"] != d["label_b"]]
    ids = set(conflict["image_id_a"]) | set(conflict["image_id_b"])
    n = int(rows["image_id"].isin(ids).sum())
    lo, hi = wilson_interval(n, len(rows))
    out.append(_row("3 leakage", "images with a duplicate of another label", "label", "share", n / len(rows), lo, hi,
                    0.0, rows, f"{len(conflict)} pairs ({int((conflict['kind'] == 'exact').sum())} exact)"))
    return pd.DataFrame(out, columns=MEASURE_COLUMNS), d


# ------------------------------------------------------------------- 4, 5. image and mask probes
def cap_patients(rows: pd.DataFrame, max_images: int, *, seed: int = 0) -> pd.DataFrame:
    """At most ``max_images`` of ``rows``, whole patients drawn at random (``seed``); the index is kept."""
    if len(rows) <= max_images:
        return rows
    patients = rows["patient_id"].drop_duplicates().sample(frac=1.0, random_state=seed)
    counts = rows.groupby("patient_id").size()[patients]
    keep = set(patients[(counts.cumsum() <= max_images).to_numpy()])
    return rows[rows["patient_id"].isin(keep)]


def probe_rows(manifest: AuditManifest, max_images: int, *, seed: int = 0) -> pd.DataFrame:
    """At most ``max_images`` rows for the pixel probes, whole patients drawn at random (``seed``)."""
    return cap_patients(manifest.rows, max_images, seed=seed).reset_index(drop=True)


def pixel_probes(manifest: AuditManifest, *, settings: AuditSettings, seed: int = 0, device: str = "cpu",
                 model=None, arrays=None, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sections 4 and 5: the image-statistics probe (thumbnail + histogram,
    :func:`covid_lib.analysis.shortcuts.image_features`) predicting the label and, with two or more
    sources, the source, on the raw image and after the paper's chain; and the lung-mask-shape
    baseline (:func:`covid_lib.analysis.shortcuts.mask_features` of the U-Net's mask) predicting the label.

    ``arrays``: the :func:`chain_arrays` of :func:`probe_rows` computed before (the same images
    under other labels, e.g. a permutation control); default computed here.

    Returns the measure rows and the chain's rejections (``step, source, image_id, reason``).
    """
    rows = probe_rows(manifest, settings.max_images, seed=seed)
    if arrays is None:
        arrays = chain_arrays(rows, PROBE_STEPS, image_size=settings.image_size, use_cache=False, model=model,
                              device=device)
    elif list(arrays.rows["image_path"]) != list(rows["image_path"]):
        raise ValueError("arrays were computed for other images than this manifest's probe rows")
    jobs = [(step, "label") for step in PROBE_STEPS]
    if rows["source"].nunique() > 1:
        jobs += [(step, "source") for step in PROBE_STEPS]
    jobs.append(("mask", "label"))
    out = []
    for step, target in tqdm(jobs, desc="image probes", disable=not progress, leave=False):
        ok = arrays.ok["after the chain" if step == "mask" else step]  # each step on the images it kept
        used = rows[ok].reset_index(drop=True)  # labels from the manifest (arrays may be reused)
        if len(used) < MIN_IMAGES or used[target].nunique() < 2:
            continue
        if step == "mask":
            X = mask_features(arrays.masks["after the chain"][ok], side=settings.side)
            name, section = "lung-mask shape", "5 lung-mask baseline"
        else:
            X = image_features(arrays.images[step][ok], side=settings.side, bins=settings.bins)
            name, section = f"image statistics, {step}", "4 image statistics"
        if target == "label":
            metric, value, low, high, scored = _probe_label(used, X, settings=settings, seed=seed)
            out.append(_row(section, name, "label", metric, value, low, high, 0.5, scored,
                            interval_note(scored["group_id"], used["label"].nunique())))
        else:
            out.append(_source_row(used, X, name, settings=settings, seed=seed))
    return pd.DataFrame(out, columns=MEASURE_COLUMNS), arrays.rejections


def _source_row(rows: pd.DataFrame, X: np.ndarray, name: str, *, settings: AuditSettings, seed: int) -> dict:
    """Which source each image comes from: balanced accuracy (chance 1/K) with a patient interval."""
    y_name = rows["source"].astype(str).to_numpy()
    classes = sorted(set(y_name))
    y = np.searchsorted(classes, y_name)
    groups = rows["group_id"].astype(str).to_numpy()
    probs, scored = cross_scores(rows, y, lambda tr: fit_probe(X[tr], y[tr], groups[tr], seed=seed),
                                 lambda m, te: m.predict_proba(X[te]), seed=seed)
    pred = probs.argmax(axis=1)
    est = multiclass_accuracy(y[scored], pred, groups=groups[scored], n_boot=settings.n_boot, seed=seed)
    b = est["balanced_accuracy"]
    return _row("4 image statistics", name, "source", "balanced accuracy", b.value, b.low, b.high,
                1 / len(classes), rows[scored], f"{len(classes)} sources")


# -------------------------------------------------------------------------------------- the audit
def run_audit(manifest: AuditManifest, *, settings: AuditSettings, seed: int = 0, device: str = "cpu",
              arrays=None, progress: bool = False) -> dict[str, pd.DataFrame]:
    """Every measure: ``measures`` (all rows of sections 1-5), ``counts`` (:func:`factor_counts`),
    ``duplicates`` (pairs) and ``rejections`` (images the chain rejected); ``arrays``: see
    :func:`pixel_probes`. A model's section 6 is :func:`covid_lib.audit.model.model_audit`."""
    steps = ["metadata factors", "metadata baseline", "leakage", "image probes"]
    bar = tqdm(steps, desc="audit", disable=not progress)
    parts = {}
    for step in bar:
        bar.set_postfix_str(step)
        if step == "metadata factors":
            parts[step] = factor_associations(manifest, settings=settings, seed=seed)
        elif step == "metadata baseline":
            parts[step] = metadata_baseline(manifest, settings=settings, seed=seed)
        elif step == "leakage":
            parts[step], duplicates = leakage(manifest, progress=progress)
        else:
            parts[step], rejections = pixel_probes(manifest, settings=settings, seed=seed, device=device,
                                                   arrays=arrays, progress=progress)
    measures = pd.concat([p for p in parts.values() if len(p)], ignore_index=True)
    return {"measures": measures, "counts": factor_counts(manifest), "duplicates": duplicates,
            "rejections": rejections}
