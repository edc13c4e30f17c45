"""Collapsed models: :func:`collapse_status` says why a model's scores cannot be read as a trained
model's (all on one side of the threshold, or no spread: :func:`score_spread`)."""

from __future__ import annotations

import math

import numpy as np

from covid_lib.metrics.validation import _validate_scores


#: A model's scores collapse (:func:`collapse_status`) when all fall on one side of this threshold
#: or their 5-95% range is under :data:`COLLAPSE_MIN_SPREAD` (issue 16; :mod:`covid_lib.analysis.protocol`).
COLLAPSE_THRESHOLD = 0.5
COLLAPSE_MIN_SPREAD = 1e-3


def score_spread(y_score) -> float:
    """The 5-95% inter-quantile range of a model's scores (``numpy.quantile``, linear interpolation):
    the spread :func:`collapse_status` compares with its ``min_spread``."""
    low, high = np.quantile(_validate_scores(y_score), [0.05, 0.95])
    return float(high - low)


def collapse_status(y_score, *, threshold: float | None = COLLAPSE_THRESHOLD,
                    min_spread: float = COLLAPSE_MIN_SPREAD) -> str | None:
    """Why a model's scores (on its own test set) cannot be read as a trained model's, or None.

    A model has *collapsed* when its scores say nothing about the image: all on one side of its
    threshold (every image gets the same prediction, so sensitivity and specificity measure where
    the scores sit, not the model), or spread so little that ranks are decided by noise (two
    Conv8s of the grid output 0.45713-0.45734 for every image). The spread is the 5-95%
    inter-quantile range (``numpy.quantile``, linear interpolation): robust to a few outlying
    images, unlike the full range, and, unlike the interquartile range, not fooled by a confident
    model whose majority class is scored almost identically (e.g. 80% of negatives at 0.001).

    Args:
        y_score: the model's scores (finite), e.g. on its own test set.
        threshold: its decision threshold; an image is COVID+ when ``score >= threshold``. None:
            read the spread only (the collapse sensitivity reading, :mod:`covid_lib.report.sensitivity`).
        min_spread: the smallest 5-95% range of a usable model, on the scores' scale.

    Returns:
        None when the scores are usable; otherwise the reasons joined by ``"; "``: ``"all scores
        at or above the threshold 0.5"``, ``"all scores below the threshold 0.5"``, ``"score
        spread 2.1e-04 < 1e-03 (5-95% range)"``.

    Example:
        >>> collapse_status([0.45713, 0.45720, 0.45734])
        'all scores below the threshold 0.5; score spread 1.9e-04 < 1e-03 (5-95% range)'
        >>> collapse_status([0.1, 0.4, 0.6, 0.9]) is None
        True
        >>> collapse_status([0.6, 0.7, 0.9], threshold=None) is None   # one side of 0.5, but spread
        True
    """
    s = _validate_scores(y_score)
    if (threshold is not None and not math.isfinite(threshold)) or not min_spread >= 0:
        raise ValueError(f"need a finite threshold (or None) and min_spread >= 0, got {threshold!r}, {min_spread!r}")
    reasons = []
    if threshold is not None and (s >= threshold).all():
        reasons.append(f"all scores at or above the threshold {threshold:g}")
    elif threshold is not None and (s < threshold).all():
        reasons.append(f"all scores below the threshold {threshold:g}")
    spread = score_spread(s)
    if spread < min_spread:
        reasons.append(f"score spread {spread:.1e} < {min_spread:.0e} (5-95% range)")
    return "; ".join(reasons) or None
