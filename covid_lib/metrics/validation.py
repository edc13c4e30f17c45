"""The input checks of :mod:`covid_lib.metrics`: labels (0/1, 1 = COVID+), finite scores, the
threshold and the bootstrap arguments; each raises ``ValueError`` with what it found."""

from __future__ import annotations

import math

import numpy as np

from covid_lib import stats


def _as_1d(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _validate_labels(y_true) -> np.ndarray:
    y = _as_1d(y_true, "y_true")
    if y.dtype == bool:
        return y
    if not (np.issubdtype(y.dtype, np.number)):
        raise ValueError(f"y_true must be 0/1 or boolean, got dtype {y.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        found = np.unique(y[bad])[:5].tolist()
        raise ValueError(f"y_true must contain only 0 and 1 (1 = COVID+); found {int(bad.sum())} "
                         f"other values, e.g. {found}")
    return y.astype(bool)


def _validate_scores(y_score, name: str = "y_score") -> np.ndarray:
    s = _as_1d(y_score, name)
    if s.dtype == bool:
        s = s.astype(float)
    if not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    s = s.astype(float)
    n_nan, n_inf = int(np.isnan(s).sum()), int(np.isinf(s).sum())
    if n_nan or n_inf:
        raise ValueError(f"{name} contains {n_nan} NaN and {n_inf} infinite values "
                         f"(of {s.size}); drop or fix those images before scoring")
    return s


def _validate(y_true, y_score, threshold: float | None = None,
              name: str = "y_score") -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(y bool, scores float)``; see :func:`binary_metrics` for the rules."""
    y, s = _validate_labels(y_true), _validate_scores(y_score, name)
    if y.size != s.size:
        raise ValueError(f"y_true and {name} have different lengths: {y.size} != {s.size}")
    if threshold is not None:
        _check_threshold(threshold, s)
    return y, s


def _check_threshold(threshold: float, s: np.ndarray) -> None:
    if not isinstance(threshold, (int, float, np.number)) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    outside = int(((s < 0.0) | (s > 1.0)).sum())
    if outside and threshold == 0.5:
        raise ValueError(
            f"{outside} scores lie outside [0, 1] (min {s.min():.3g}, max {s.max():.3g}), so "
            "threshold 0.5 (meant for probabilities) is meaningless: pass probabilities, or a "
            "threshold on the score's own scale (e.g. 0.0 for logits, or choose_threshold)")


def _check_bootstrap_args(n_boot: int, alpha: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    stats.z_critical(alpha)  # validates alpha
