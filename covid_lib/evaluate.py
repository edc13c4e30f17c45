"""Per-image scores on test sets, and the paper's metrics with intervals at two thresholds.

Tartaglione et al. 2020 (Sec. IV) score every model on the test set of every composition, with
"the classification threshold ... set to 0.5" for every metric but AUC. Here each test set is
scored at 0.5 (the paper) *and* at a threshold chosen on the training composition's *validation*
set (Youden's J, :func:`covid_lib.metrics.choose_threshold`), never on test data. Intervals come
from :func:`covid_lib.metrics.binary_metrics`, with the patient groups so that the bootstrap
resamples patients, not images.

Example:
    >>> import numpy as np, pandas as pd
    >>> val = pd.DataFrame({"label": [0, 0, 1, 1], "score": [0.1, 0.3, 0.35, 0.9], "group_id": list("abcd")})
    >>> test = val.assign(test_set="T")
    >>> table = metrics_table(test, val, n_boot=0)
    >>> table[["test_set", "threshold_rule", "threshold", "sensitivity"]].round(3).values.tolist()
    [['T', 'paper (0.5)', 0.5, 0.5], ['T', 'validation (youden)', 0.325, 1.0]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch.nn as nn
from torch.utils.data import Dataset

from covid_lib.metrics import METRIC_LABELS, BinaryMetrics, binary_metrics, choose_threshold, format_estimate
from covid_lib.train import predict

SCORE_COLUMNS = ["test_set", "source", "image_id", "patient_id", "group_id", "label", "score"]
PAPER_THRESHOLD = 0.5


def score_images(model: nn.Module, data: Dataset, rows: pd.DataFrame, *, test_set: str,
                 device: str = "auto", batch_size: int = 64) -> pd.DataFrame:
    """One row per image: ``test_set, source, image_id, patient_id, group_id, label, score``.

    ``score`` is the softmax probability of class 1 (COVID+); ``rows`` are the dataset's rows in
    order (from :func:`covid_lib.data.dataset.load_images`).
    """
    if len(rows) != len(data):
        raise ValueError(f"{len(rows)} rows for a dataset of {len(data)} images")
    probs, labels, _ = predict(model, data, batch_size=batch_size, device=device)
    if probs.shape[1] != 2:
        raise ValueError(f"COVID scoring needs a 2-class head, the model has {probs.shape[1]} outputs")
    out = rows[["source", "image_id", "patient_id", "group_id"]].reset_index(drop=True).copy()
    out.insert(0, "test_set", test_set)
    out["label"] = labels
    out["score"] = probs[:, 1].astype(float)
    return out[SCORE_COLUMNS]


def metrics_at(scores: pd.DataFrame, threshold: float, *, n_boot: int = 2000, seed: int = 0) -> BinaryMetrics:
    """:func:`binary_metrics` of a score table at ``threshold``, bootstrapping patient groups."""
    return binary_metrics(scores["label"].to_numpy(), scores["score"].to_numpy(), threshold=threshold,
                          groups=scores["group_id"].astype(str).to_numpy(), n_boot=n_boot, seed=seed)


def validation_threshold(val_scores: pd.DataFrame, criterion: str = "youden") -> float:
    """The threshold chosen on validation scores (:func:`choose_threshold`); 0.5 with one class."""
    y = val_scores["label"].to_numpy()
    if len(np.unique(y)) < 2:
        return PAPER_THRESHOLD
    return float(choose_threshold(y, val_scores["score"].to_numpy(), criterion=criterion))


def metrics_table(test_scores: pd.DataFrame, val_scores: pd.DataFrame, *, criterion: str = "youden",
                  n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Metrics of every test set (``test_set`` column) at 0.5 and at the validation threshold.

    Returns:
        One row per test set and threshold rule: ``test_set, threshold_rule, n`` then the flat
        :meth:`BinaryMetrics.to_dict` columns (value, ``_low``, ``_high``, ``_method`` per metric).
    """
    tuned = validation_threshold(val_scores, criterion)
    rows = []
    for test_set, part in test_scores.groupby("test_set", sort=False):
        for rule, t in ((f"paper ({PAPER_THRESHOLD:g})", PAPER_THRESHOLD), (f"validation ({criterion})", tuned)):
            m = metrics_at(part, t, n_boot=n_boot, seed=seed)
            rows.append({"test_set": test_set, "threshold_rule": rule, "n": len(part), **m.to_dict()})
    return pd.DataFrame(rows)


def format_metrics(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """``"0.91 [0.80, 0.96]"`` cells for the paper's metrics, one row per test set and rule."""
    out = table[["test_set", "threshold_rule", "threshold", "n"]].copy()
    out["threshold"] = out["threshold"].round(3)
    for m, label in METRIC_LABELS.items():
        out[label] = [format_estimate(v, lo, hi, digits) for v, lo, hi in
                      zip(table[m], table[f"{m}_low"], table[f"{m}_high"])]
    return out
