"""A metadata-only baseline: what a classifier reaches without looking at the lungs.

Tartaglione et al. (Sec. III) warn that a deep model may learn acquisition settings instead of the
disease, and test it only indirectly (pre-processing, cross-dataset tests, Table II). Here the
question is asked directly: a scikit-learn classifier sees only the metadata of each image (view,
year of the study date, age, sex, original file format and colour mode, original width and
height; :func:`covid_lib.data.confounders.metadata_features`), never a pixel. It is trained on a
composition's training and validation images and scored on the test set of every composition,
the layout of the paper's Table II. Its AUC is the score a model can reach from the confounders
alone. None of the three papers this book reads reports such a baseline.

Missing values are features too: a missing age or date is imputed (median) and flagged by an
indicator, a missing sex or view is its own category. Where the absence of a value marks a source
(no date on any Kermany or NIH image, no age on Kermany's), the baseline can use it, as a network
can use the look of a source. Fixed hyper-parameters, no tuning; results are a pure function of the
data, the seed and the model name. The AUC and its interval are those of every AUC in the book
(:func:`covid_lib.metrics.auc_estimate`, the rule of :func:`covid_lib.metrics.binary_metrics`): the
percentile patient-cluster bootstrap when some test patient has several images, DeLong's interval
on the logit scale when each has one; the table's ``interval`` column says which.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from covid_lib.data import COMPOSITIONS, compose
from covid_lib.data.confounders import metadata_features
from covid_lib.metrics import auc_estimate

#: The metadata the baseline sees, grouped as a reader names them; never pixels.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "view": ("view",), "year": ("year",), "age": ("age",), "sex": ("sex",),
    "format": ("format",), "size": ("width", "height"),
}
#: Metadata that separate the labels *by construction* of the compositions, not by anything a
#: hospital's images would carry (issue 16): the study year (every COVID+ image dates from 2019 on;
#: year alone gives AUC 0.95 on CORDA) and the missing-value flags (no date on any Kermany or NIH
#: image, no age on Kermany's: a flag names the source). The headline baseline leaves them out;
#: the baseline with them is shown beside it, labelled as a by-construction proxy.
LABEL_PROXIES: tuple[str, ...] = ("year", "missing-value flags")
#: The feature groups of the headline baseline: every group but the year.
HEADLINE_GROUPS: tuple[str, ...] = tuple(g for g in FEATURE_GROUPS if g != "year")
NUMERIC = ("year", "age", "width", "height")
CATEGORICAL = ("view", "sex", "format")
MODELS = ("logistic", "boosting")
TABLE_COLUMNS = ["composition", "test_set", "model", "auc", "auc_low", "auc_high", "n_images", "n_patients",
                 "interval"]
SCORE_COLUMNS = ["composition", "test_set", "model", "source", "image_id", "patient_id", "group_id", "label", "score"]


def feature_frame(rows: pd.DataFrame, groups: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The baseline's input columns for ``rows`` (only those of ``groups``, default all)."""
    groups = tuple(FEATURE_GROUPS) if groups is None else groups
    unknown = set(groups) - set(FEATURE_GROUPS)
    if unknown:
        raise ValueError(f"unknown feature groups {sorted(unknown)}; choose from {list(FEATURE_GROUPS)}")
    feats = metadata_features(rows)
    columns = [c for g in groups for c in FEATURE_GROUPS[g]]
    out = feats[columns].copy()
    for c in columns:
        if c in CATEGORICAL:
            out[c] = out[c].astype(object).where(out[c].notna(), "missing").astype(str)
    return out


def make_model(columns: list[str], model: str = "logistic", *, seed: int = 0, missing_flags: bool = True) -> Pipeline:
    """An unfitted pipeline over ``columns``: impute (+ a missing-value indicator when
    ``missing_flags``) + scale (numeric; sizes come in log2), one-hot (categorical), then logistic
    regression (C=1) or gradient boosting (depth 3)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    num = [c for c in columns if c in NUMERIC]
    cat = [c for c in columns if c in CATEGORICAL]
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=missing_flags,
                                                 keep_empty_features=True)),
                        ("scale", StandardScaler())])
    parts = []
    if num:
        parts.append(("num", numeric, num))
    if cat:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat))
    prep = ColumnTransformer(parts, verbose_feature_names_out=True)
    if model == "logistic":
        clf = LogisticRegression(C=1.0, max_iter=5000)
    else:
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_depth=3,
                                             early_stopping=False, random_state=seed)
    return Pipeline([("prep", prep), ("clf", clf)])


def _log_sizes(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in ("width", "height"):
        if c in out:
            out[c] = np.log2(out[c])
    return out


def fit_baseline(train_rows: pd.DataFrame, *, model: str = "logistic", seed: int = 0,
                 groups: tuple[str, ...] | None = None, missing_flags: bool = True) -> Pipeline:
    """Fit the baseline on composed rows (``label`` column) from their metadata only."""
    x = _log_sizes(feature_frame(train_rows, groups))
    y = train_rows["label"].astype(int).to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError("the training rows hold one class only: nothing to learn")
    return make_model(list(x.columns), model, seed=seed, missing_flags=missing_flags).fit(x, y)


def predict_baseline_proba(fitted: Pipeline, rows: pd.DataFrame) -> np.ndarray:
    """Class probabilities ``(N, K)`` of each row from its metadata (K = 2 for COVID+/-; more for
    a multi-class label, as in :mod:`covid_lib.audit`)."""
    columns = list(fitted.named_steps["prep"].feature_names_in_)
    x = _log_sizes(feature_frame(rows))[columns]
    return fitted.predict_proba(x)


def predict_baseline(fitted: Pipeline, rows: pd.DataFrame) -> np.ndarray:
    """P(COVID+) of each row from its metadata."""
    return predict_baseline_proba(fitted, rows)[:, 1]


def _composed(data_root, seed: int) -> dict[str, pd.DataFrame]:
    return {name: compose(name, data_root, seed=seed) for name in COMPOSITIONS}


def baseline_scores(data_root: str | os.PathLike | None = None, *, seed: int = 0, model: str = "logistic",
                    groups: tuple[str, ...] | None = None, proxies: bool = False,
                    composed: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per-image scores: the baseline of each composition on the test set of every composition.

    ``proxies=False`` is the headline baseline: without the :data:`LABEL_PROXIES` (the year and
    the missing-value flags; ``groups`` default :data:`HEADLINE_GROUPS` then).

    Returns:
        :data:`SCORE_COLUMNS`: ``composition`` (training), ``test_set``, ``model``, the image's
        ``source, image_id, patient_id, group_id, label`` and ``score`` (P(COVID+)).
    """
    composed = composed or _composed(data_root, seed)
    parts = []
    for train_name, rows in composed.items():
        use = groups if groups is not None or proxies else HEADLINE_GROUPS
        fitted = fit_baseline(rows[rows["split"] != "test"], model=model, seed=seed, groups=use, missing_flags=proxies)
        for test_name, test_rows in composed.items():
            test = test_rows[test_rows["split"] == "test"]
            out = test[["source", "image_id", "patient_id", "group_id", "label"]].copy()
            out.insert(0, "composition", train_name)
            out.insert(1, "test_set", test_name)
            out.insert(2, "model", model)
            out["label"] = out["label"].astype(int)
            out["score"] = predict_baseline(fitted, test)
            parts.append(out)
    return pd.concat(parts, ignore_index=True)[SCORE_COLUMNS]


def table_from_scores(scores: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """AUC with its interval (:func:`covid_lib.metrics.auc_estimate`, patients by ``group_id``; its
    ``method`` in ``interval``) per training composition and test set."""
    rows = []
    for (train_name, test_name, model), part in scores.groupby(["composition", "test_set", "model"], sort=False):
        est = auc_estimate(part["label"], part["score"], groups=part["group_id"], n_boot=n_boot, seed=seed)
        rows.append({"composition": train_name, "test_set": test_name, "model": model, "auc": est.value,
                     "auc_low": est.low, "auc_high": est.high, "n_images": len(part),
                     "n_patients": int(part["patient_id"].nunique()), "interval": est.method})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def baseline_table(data_root: str | os.PathLike | None = None, *, seed: int = 0, n_boot: int = 2000,
                   model: str = "logistic", proxies: bool = False) -> pd.DataFrame:
    """The metadata-only baseline in the Table II layout: each training composition x each test set.

    Args:
        data_root: the data root (default ``$COVID_LIB_DATA``, else ``../shared/data``).
        seed: split seed of :func:`covid_lib.data.compose` and bootstrap seed.
        n_boot: patient-cluster bootstrap resamples (0: no bootstrap interval; a test set whose
            patients have one image each keeps DeLong's).
        model: ``"logistic"`` or ``"boosting"``.
        proxies: include the :data:`LABEL_PROXIES` (year, missing-value flags), which separate the
            labels by construction; default False, the headline baseline.

    Returns:
        :data:`TABLE_COLUMNS`: ``composition, test_set, model, auc, auc_low, auc_high, n_images,
        n_patients, interval`` (the interval's method, :func:`covid_lib.metrics.auc_estimate`), one row per
        training composition and test set (all test images of the composition, chain rejections
        included: a run may score a few fewer).
    """
    scores = baseline_scores(data_root, seed=seed, model=model, proxies=proxies)
    return table_from_scores(scores, n_boot=n_boot, seed=seed)


def baseline_importances(data_root: str | os.PathLike | None = None, *, seed: int = 0, model: str = "logistic",
                         composed: dict[str, pd.DataFrame] | None = None, n_repeats: int = 20) -> pd.DataFrame:
    """What each composition's baseline uses.

    Returns:
        Long table ``composition, model, kind, feature, group, value``. For ``logistic``, ``kind`` is
        ``"coefficient"``: one row per model input (standardised numeric value, missing indicator or
        one-hot level), ``value`` its log-odds weight (positive = towards COVID+). For both models,
        ``kind="permutation"`` rows give per feature group the drop of training AUC when the group's
        columns are shuffled (mean of ``n_repeats``, seeded).
    """
    composed = composed or _composed(data_root, seed)
    rows = []
    for name, comp in composed.items():
        train = comp[comp["split"] != "test"]
        fitted = fit_baseline(train, model=model, seed=seed)
        if model == "logistic":
            names = fitted.named_steps["prep"].get_feature_names_out()
            for feat, coef in zip(names, fitted.named_steps["clf"].coef_[0]):
                rows.append({"composition": name, "model": model, "kind": "coefficient",
                             "feature": _readable(feat), "group": _group_of(feat), "value": float(coef)})
        x = _log_sizes(feature_frame(train))
        y = train["label"].astype(int).to_numpy()
        base = permutation_importance(fitted, x, y, scoring="roc_auc", n_repeats=n_repeats, random_state=seed)
        for col, drop in zip(x.columns, base.importances_mean):
            rows.append({"composition": name, "model": model, "kind": "permutation", "feature": col,
                         "group": next(g for g, cs in FEATURE_GROUPS.items() if col in cs), "value": float(drop)})
    out = pd.DataFrame(rows, columns=["composition", "model", "kind", "feature", "group", "value"])
    perm = out["kind"] == "permutation"
    grouped = out[perm].groupby(["composition", "model", "kind", "group"], sort=False)["value"].sum().reset_index()
    grouped["feature"] = grouped["group"]
    return pd.concat([out[~perm], grouped[out.columns]], ignore_index=True)


def _readable(name: str) -> str:
    name = name.split("__", 1)[1] if "__" in name else name
    if name.startswith("missingindicator_"):
        return name.removeprefix("missingindicator_") + " missing"
    for c in CATEGORICAL:
        if name.startswith(c + "_"):
            return f"{c} = {name[len(c) + 1:]}"
    return name


def _group_of(name: str) -> str:
    base = _readable(name).split(" ")[0]
    return next(g for g, cs in FEATURE_GROUPS.items() if base in cs)


def feature_ablation(data_root: str | os.PathLike | None = None, *, seed: int = 0, model: str = "logistic",
                     n_boot: int = 0, composed: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """AUC on each composition's own test set with each feature group alone and with all but it
    (interval: :func:`covid_lib.metrics.auc_estimate`; ``n_boot=0``, the default, leaves a bootstrap
    interval NaN).

    Returns:
        ``composition, group, setting ("alone" | "without" | "all"), auc, auc_low, auc_high``.
    """
    composed = composed or _composed(data_root, seed)
    rows = []
    for name, comp in composed.items():
        train, test = comp[comp["split"] != "test"], comp[comp["split"] == "test"]
        settings = [("all", "all", None)]
        settings += [(g, "alone", (g,)) for g in FEATURE_GROUPS]
        settings += [(g, "without", tuple(h for h in FEATURE_GROUPS if h != g)) for g in FEATURE_GROUPS]
        for group, setting, groups in settings:
            fitted = fit_baseline(train, model=model, seed=seed, groups=groups)
            est = auc_estimate(test["label"], predict_baseline(fitted, test), groups=test["group_id"],
                               n_boot=n_boot, seed=seed)
            rows.append({"composition": name, "group": group, "setting": setting, "auc": est.value,
                         "auc_low": est.low, "auc_high": est.high})
    return pd.DataFrame(rows)
