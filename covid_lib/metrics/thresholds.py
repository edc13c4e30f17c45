"""Confusion counts at a threshold (:func:`confusion_counts`) and the threshold chosen on
validation data (:func:`choose_threshold`, by one of :data:`THRESHOLD_CRITERIA`)."""

from __future__ import annotations

import numpy as np

from covid_lib.metrics.types import ConfusionCounts
from covid_lib.metrics.validation import _validate

THRESHOLD_CRITERIA: tuple[str, ...] = ("youden", "balanced_accuracy", "f1", "closest_topleft")


def _counts(y: np.ndarray, pred: np.ndarray) -> ConfusionCounts:
    return ConfusionCounts(tp=int((y & pred).sum()), fp=int((~y & pred).sum()),
                           fn=int((y & ~pred).sum()), tn=int((~y & ~pred).sum()))


def confusion_counts(y_true, y_score, *, threshold: float = 0.5) -> ConfusionCounts:
    """Confusion counts with ``y_score >= threshold`` predicted COVID+ (validated inputs)."""
    y, s = _validate(y_true, y_score, threshold)
    return _counts(y, s >= threshold)


def _criterion_values(tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int,
                      criterion: str) -> np.ndarray:
    sens, spec = tp / n_pos, 1.0 - fp / n_neg
    if criterion in ("youden", "balanced_accuracy"):
        return sens + spec - 1.0  # same argmax as (sens + spec) / 2
    if criterion == "f1":
        return 2.0 * tp / (tp + fp + n_pos)  # 2tp / (2tp + fp + fn), fn = n_pos - tp
    return -((1.0 - sens) ** 2 + (1.0 - spec) ** 2)  # closest_topleft


def choose_threshold(y_true_val, y_score_val, *, criterion: str = "youden") -> float:
    """Threshold maximising ``criterion`` on *validation* data (never on the test set).

    Candidates are the midpoints between consecutive distinct validation scores (so the same
    split of the validation images is obtained, robustly to scores slightly off on the test
    set), plus the lowest score (everything COVID+). Ties between equally good thresholds go to
    the one closest to 0.5, the paper's default.

    Parameters
    ----------
    y_true_val, y_score_val
        Validation labels (both classes present) and scores.
    criterion
        ``"youden"`` (sensitivity + specificity - 1) or its equivalent ``"balanced_accuracy"``;
        ``"f1"`` (F-score of COVID+); ``"closest_topleft"`` (ROC point nearest (0, 1)).

    Returns
    -------
    float
        Pass it as ``threshold=`` to :func:`binary_metrics` on the test set.
    """
    if criterion not in THRESHOLD_CRITERIA:
        raise ValueError(f"criterion must be one of {THRESHOLD_CRITERIA}, got {criterion!r}")
    y, s = _validate(y_true_val, y_score_val)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("choose_threshold needs both classes in the validation labels")
    order = np.argsort(-s, kind="mergesort")
    s_desc, y_desc = s[order], y[order]
    last_of_run = np.r_[s_desc[1:] != s_desc[:-1], True]
    tp, fp = np.cumsum(y_desc)[last_of_run], np.cumsum(~y_desc)[last_of_run]
    value = _criterion_values(tp, fp, n_pos, n_neg, criterion)
    upper = s_desc[last_of_run]
    lower = np.r_[upper[1:], -np.inf]
    mid = (upper + lower) / 2.0
    cand = np.where((mid > lower) & (mid < upper), mid, upper)
    best = np.flatnonzero(value >= value.max() - 1e-12)
    return float(cand[best[np.argmin(np.abs(cand[best] - 0.5))]])
