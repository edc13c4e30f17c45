"""The library's one bootstrap and the weighted statistics it evaluates.

* :func:`bootstrap_replicates`, :func:`bootstrap_ci` and :func:`percentile_interval` -- the
  library's one bootstrap: seeded, vectorised, resampling whole groups (patients) when given
  (cluster bootstrap, Davison & Hinkley 1997, Sec. 3.8), with percentile intervals. Every
  statistic is a function of per-case resampling *weights* (how often each case was drawn), so
  the same draws serve means (segmentation scores), confusion counts and the AUC
  (:func:`weighted_auc`).

References
----------
Davison AC, Hinkley DV (1997). Bootstrap Methods and their Application. Cambridge UP.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from covid_lib.stats.intervals import z_critical


#: Order of the four confusion cells in every ``(..., 4)`` counts array of this module.
CELLS: tuple[str, ...] = ("tp", "fp", "fn", "tn")


def cell_indicators(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """One-hot ``(N, 4)`` matrix of each case's confusion cell, columns as :data:`CELLS`."""
    y, p = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    return np.column_stack([y & p, ~y & p, y & ~p, ~y & ~p]).astype(np.int64)


def group_codes(groups, n: int) -> np.ndarray:
    """Integer codes 0..G-1 of ``groups`` (one id per case) in order of first appearance.

    Raises:
        ValueError: not one id per case, or missing ids (None/NaN).
    """
    import pandas as pd

    g = np.asarray(groups)
    if g.ndim != 1 or g.size != n:
        raise ValueError(f"groups must be 1-D with one id per image: got shape {g.shape}, "
                         f"expected ({n},)")
    codes, _ = pd.factorize(g, sort=False)
    if (codes < 0).any():
        raise ValueError(f"groups contain {int((codes < 0).sum())} missing ids (None/NaN)")
    return codes


def bootstrap_replicates(statistic: Callable[[np.ndarray], np.ndarray], n: int, *, groups=None,
                         n_boot: int = 2000, seed: int = 0, chunk: int = 500) -> np.ndarray:
    """Bootstrap replicates of ``statistic``, resampling cases or, with ``groups``, whole groups.

    Resample ``b`` draws ``G`` units (cases, or groups numbered in order of first appearance)
    with replacement: ``numpy.random.default_rng(seed).integers(0, G, size=(n_boot, G))``. Each
    case then carries the number of times its unit was drawn, and ``statistic`` receives these
    weights for a block of resamples.

    Parameters
    ----------
    statistic
        ``weights (b, n) -> (b,)`` or ``(b, k)`` array: the statistic of each weighted resample
        (e.g. ``lambda w: w @ x / w.sum(1)`` for the mean of ``x``). NaN marks an undefined
        replicate (e.g. a class missing).
    n
        Number of cases.
    groups
        Optional cluster ids (patients), one per case; whole clusters are resampled. With one
        case per cluster, in the same order, the draws equal the case bootstrap's.
    n_boot, seed
        Number of resamples and the seed; the result is a pure function of the inputs.
    chunk
        Resamples per call of ``statistic`` (bounds memory to ``chunk * n`` weights).

    Returns
    -------
    ndarray
        ``(n_boot,)`` or ``(n_boot, k)`` replicates.
    """
    codes = np.arange(n) if groups is None else group_codes(groups, n)
    n_units = int(codes.max()) + 1 if n else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, max(n_units, 1), size=(n_boot, n_units))
    parts = []
    for start in range(0, n_boot, chunk):
        block = draws[start:start + chunk]
        b = block.shape[0]
        offsets = (block + n_units * np.arange(b)[:, None]).ravel()
        unit_weights = np.bincount(offsets, minlength=b * n_units).reshape(b, n_units)
        parts.append(np.asarray(statistic(unit_weights[:, codes]), dtype=float))
    return np.concatenate(parts) if parts else np.zeros((0,))


def weighted_mean(values) -> Callable[[np.ndarray], np.ndarray]:
    """The statistic ``weights -> weighted mean of values`` for :func:`bootstrap_replicates`."""
    v = np.asarray(values, dtype=np.float64)
    return lambda w: (w @ v) / w.sum(axis=1)


def bootstrap_ci(values, statistic: Callable[[np.ndarray], np.ndarray] | None = None, *, groups=None,
                 n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic of ``values`` (default: their mean).

    Parameters
    ----------
    values
        ``N`` values (or an ``(N, ...)`` array the statistic reads); their count sets ``N``.
    statistic
        ``weights (b, N) -> (b,)``, see :func:`bootstrap_replicates`; default the weighted mean.
    groups
        Optional cluster ids (patients): whole clusters are resampled.
    n_boot, level, seed
        Resamples, coverage and seed.

    Returns
    -------
    (low, high)
        NaN replicates are dropped; ``(nan, nan)`` without values or without a finite replicate.
    """
    values = np.asarray(values)
    if len(values) == 0:
        return float("nan"), float("nan")
    statistic = statistic or weighted_mean(values)
    reps = bootstrap_replicates(statistic, len(values), groups=groups, n_boot=n_boot, seed=seed)
    low, high, _ = percentile_interval(reps, 1.0 - level)
    return low, high


def percentile_interval(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float, int]:
    """Percentile interval of bootstrap replicates, ignoring NaN replicates.

    Returns ``(low, high, n_valid)``; ``(nan, nan, 0)`` when no replicate is finite.
    """
    z_critical(alpha)  # validates alpha
    v = np.asarray(values, dtype=float)
    ok = v[~np.isnan(v)]
    if ok.size == 0:
        return (float("nan"), float("nan"), 0)
    low, high = np.quantile(ok, [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(low), float(high), int(ok.size))


def weighted_auc(y_true, y_score, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count half) of each weighted resample: ``(b, N)`` weights -> ``(b,)``.

    ``sum_{i pos, j neg} w_i w_j [s_i > s_j] + 0.5 w_i w_j [s_i = s_j]`` over
    ``(sum_pos w)(sum_neg w)``: the AUC of the sample in which case ``i`` appears ``w_i`` times.
    NaN where a resample lacks a class. With unit weights it equals :func:`delong_auc`'s AUC.
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]
    w = w[:, order]
    pos, neg = w * y_sorted, w * ~y_sorted
    pos_t, neg_t = np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)
    neg_below = np.cumsum(neg_t, axis=1) - neg_t
    num = (pos_t * (neg_below + 0.5 * neg_t)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)
