"""Interval and test machinery behind :mod:`covid_lib.metrics`.

Every function here works on plain numbers or numpy arrays and knows nothing about images:

* :func:`wilson_interval` -- Wilson (1927) score interval for a binomial proportion (used for
  sensitivity, specificity and accuracy); identical to statsmodels'
  ``proportion_confint(method="wilson")``.
* :func:`delong_covariance`, :func:`delong_auc` and :func:`delong_test` -- the AUC, its variance
  and the paired test of two AUCs after DeLong, DeLong & Clarke-Pearson (1988), computed with the
  fast midrank algorithm of Sun & Xu (2014), which handles tied scores exactly.
* :func:`log_odds_ratio_interval` -- odds ratio with a log-scale (Woolf) interval and the
  Haldane (1940) / Anscombe (1956) correction: 0.5 added to *every* cell when any cell is zero.
* :func:`bootstrap_replicates`, :func:`bootstrap_ci` and :func:`percentile_interval` -- the
  library's one bootstrap: seeded, vectorised, resampling whole groups (patients) when given
  (cluster bootstrap, Davison & Hinkley 1997, Sec. 3.8), with percentile intervals. Every
  statistic is a function of per-case resampling *weights* (how often each case was drawn), so
  the same draws serve means (segmentation scores), confusion counts and the AUC
  (:func:`weighted_auc`).

References
----------
Wilson EB (1927). Probable inference, the law of succession, and statistical inference.
    JASA 22:209-212.
DeLong ER, DeLong DM, Clarke-Pearson DL (1988). Comparing the areas under two or more correlated
    receiver operating characteristic curves: a nonparametric approach. Biometrics 44:837-845.
Sun X, Xu W (2014). Fast implementation of DeLong's algorithm for comparing the areas under
    correlated receiver operating characteristic curves. IEEE Signal Process Lett 21:1389-1393.
Haldane JBS (1940). The mean and variance of chi^2, when used as a test of homogeneity, when
    expectations are small. Biometrika 31:346-355.
Anscombe FJ (1956). On estimating binomial response relations. Biometrika 43:461-464.
Davison AC, Hinkley DV (1997). Bootstrap Methods and their Application. Cambridge UP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import norm, rankdata

#: Order of the four confusion cells in every ``(..., 4)`` counts array of this module.
CELLS: tuple[str, ...] = ("tp", "fp", "fn", "tn")


def z_critical(alpha: float) -> float:
    """Two-sided standard-normal critical value ``z_{1 - alpha/2}`` (1.95996... for 0.05)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(norm.isf(alpha / 2.0))


# --------------------------------------------------------------------------- Wilson


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for the proportion ``successes / n``.

    Parameters
    ----------
    successes, n
        Number of successes and of trials, ``0 <= successes <= n``.
    alpha
        One minus the coverage (0.05 gives a 95% interval).

    Returns
    -------
    (low, high)
        The interval, clipped to [0, 1]; ``(nan, nan)`` when ``n == 0``. With 0 or ``n``
        successes one end is exactly 0 or 1, as in statsmodels.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (float("nan"), float("nan"))
    z = z_critical(alpha)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denom
    half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    if successes == 0:
        return (0.0, float(min(center + half, 1.0)))
    if successes == n:
        return (float(max(center - half, 0.0)), 1.0)
    return (float(max(center - half, 0.0)), float(min(center + half, 1.0)))


# --------------------------------------------------------------------------- DeLong


def _check_delong_inputs(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != y.size:
        raise ValueError(f"scores have {s.shape[1]} columns but y_true has {y.size} labels")
    if y.all() or not y.any():
        raise ValueError("DeLong needs both classes: y_true has only one class")
    return y, s


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for ``k`` models scored on the same cases.

    Fast algorithm of Sun & Xu (2014): with midranks ``T_z`` over all cases and ``T_x``/``T_y``
    within positives/negatives, the structural components are
    ``V10 = (T_z[pos] - T_x) / n`` and ``V01 = 1 - (T_z[neg] - T_y) / m``, and
    ``S = cov(V10) / m + cov(V01) / n``. Midranks give ties half credit, so the AUC equals the
    Mann-Whitney statistic (and sklearn's ``roc_auc_score``) with ties. O(k N log N).

    Parameters
    ----------
    y_true
        Binary labels (1 = positive), length ``N``, both classes present.
    scores
        ``(N,)`` or ``(k, N)`` scores; higher means more likely positive.

    Returns
    -------
    auc : ndarray, shape (k,)
    cov : ndarray, shape (k, k)
    """
    y, s = _check_delong_inputs(y_true, scores)
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tx = rankdata(pos, axis=1)
    ty = rankdata(neg, axis=1)
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    k = s.shape[0]
    # With a single case in a class its variance component is not estimable: NaN, not 0.
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.full((k, k), np.nan)
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.full((k, k), np.nan)
    return auc, s10 / m + s01 / n


@dataclass(frozen=True)
class AucInterval:
    """AUC with its DeLong standard error and ``1 - alpha`` interval."""

    auc: float
    se: float
    low: float
    high: float
    transform: str


def delong_auc(y_true, y_score, *, alpha: float = 0.05, transform: str = "logit") -> AucInterval:
    """AUC with a DeLong confidence interval.

    Parameters
    ----------
    y_true, y_score
        Binary labels (both classes present) and scores of one model.
    alpha
        One minus the coverage.
    transform
        ``"logit"`` (default): the interval ``logit(AUC) +- z * se / (AUC (1 - AUC))`` mapped
        back, which stays inside (0, 1) and is asymmetric near 1 (delta method).
        ``"none"``: ``AUC +- z * se`` clipped to [0, 1]. When the variance is 0 (e.g. perfect
        separation, AUC = 1) the interval degenerates to ``[AUC, AUC]`` under both; with a single
        case in a class the variance is not estimable and the interval is NaN.
    """
    if transform not in ("logit", "none"):
        raise ValueError(f"transform must be 'logit' or 'none', got {transform!r}")
    auc_arr, cov = delong_covariance(y_true, y_score)
    auc, var = float(auc_arr[0]), float(cov[0, 0])
    se = float(np.sqrt(var)) if var > 0.0 else (0.0 if var == var else float("nan"))
    z = z_critical(alpha)
    if np.isnan(se):
        return AucInterval(auc, se, float("nan"), float("nan"), transform)
    if se == 0.0 or auc in (0.0, 1.0):
        return AucInterval(auc, se, auc, auc, transform)
    if transform == "none":
        return AucInterval(auc, se, max(auc - z * se, 0.0), min(auc + z * se, 1.0), transform)
    logit, se_logit = np.log(auc / (1.0 - auc)), se / (auc * (1.0 - auc))
    low, high = (1.0 / (1.0 + np.exp(-(logit + d * z * se_logit))) for d in (-1.0, 1.0))
    return AucInterval(auc, se, float(low), float(high), transform)


@dataclass(frozen=True)
class DeLongTest:
    """Paired DeLong comparison of two AUCs measured on the same cases.

    ``diff = auc_a - auc_b``; ``low``/``high`` is the normal ``1 - alpha`` interval of ``diff``
    (clipped to [-1, 1]); ``z = diff / se`` and ``p_value`` is two-sided.
    """

    auc_a: float
    auc_b: float
    diff: float
    se: float
    z: float
    p_value: float
    low: float
    high: float
    alpha: float


def delong_test(y_true, score_a, score_b, *, alpha: float = 0.05) -> DeLongTest:
    """Paired DeLong test of ``AUC_a == AUC_b`` for two models scored on the same images.

    The variance of the difference is ``S_aa + S_bb - 2 S_ab`` from :func:`delong_covariance`,
    so the correlation between the two models (same images) is accounted for.

    Degenerate cases: when that variance is (numerically) 0 and the AUCs are equal (e.g. identical scores),
    ``z = 0`` and ``p = 1``; when it is 0 and they differ, ``z = +-inf`` and ``p = 0``.

    Parameters
    ----------
    y_true
        Binary labels (both classes present).
    score_a, score_b
        Scores of the two models, same length and order as ``y_true``.
    alpha
        One minus the coverage of the interval of the difference.
    """
    a, b = np.asarray(score_a, dtype=float).ravel(), np.asarray(score_b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"score_a and score_b differ in length: {a.size} != {b.size}")
    auc, cov = delong_covariance(y_true, np.vstack([a, b]))
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = float(np.sqrt(var)) if var > 1e-15 else (0.0 if var == var else float("nan"))
    if np.isnan(se):
        z = p = float("nan")
    elif se == 0.0:
        z = 0.0 if abs(diff) < 1e-12 else float(np.copysign(np.inf, diff))
        p = 1.0 if z == 0.0 else 0.0
    else:
        z = diff / se
        p = float(2.0 * norm.sf(abs(z)))
    half = z_critical(alpha) * se
    return DeLongTest(float(auc[0]), float(auc[1]), diff, se, z, p,
                      max(diff - half, -1.0), min(diff + half, 1.0), alpha)


# --------------------------------------------------------------------------- odds ratio


@dataclass(frozen=True)
class OddsRatio:
    """Odds ratio ``(a d) / (b c)`` with its log-scale interval.

    ``corrected`` says whether 0.5 was added to every cell (Haldane-Anscombe); ``table`` is the
    table actually used, as ``(a, b, c, d)``.
    """

    value: float
    low: float
    high: float
    corrected: bool
    table: tuple[float, float, float, float]


def log_odds_ratio_interval(a: float, b: float, c: float, d: float,
                            alpha: float = 0.05, *, correction: str = "auto") -> OddsRatio:
    """Odds ratio of the 2x2 table ``[[a, b], [c, d]]`` with a Woolf (log-scale) interval.

    ``exp(log OR +- z * sqrt(1/a + 1/b + 1/c + 1/d))``. For the diagnostic odds ratio pass
    ``(tp, fn, fp, tn)``. Agrees with statsmodels ``Table2x2(table).oddsratio`` and
    ``.oddsratio_confint(alpha)`` on the same table (note that ``Table2x2(shift_zeros=True)``
    replaces only the zero cells by 0.5, which is *not* the Haldane-Anscombe correction).

    Parameters
    ----------
    a, b, c, d
        Cell counts, all >= 0.
    alpha
        One minus the coverage.
    correction
        ``"auto"``: add 0.5 to every cell when any cell is 0 (Haldane 1940, Anscombe 1956);
        ``"always"``; ``"never"`` (a zero cell then gives 0, inf or nan bounds).
    """
    cells = np.array([a, b, c, d], dtype=float)
    if (cells < 0).any() or not np.isfinite(cells).all():
        raise ValueError(f"cell counts must be finite and >= 0, got {cells.tolist()}")
    if correction not in ("auto", "always", "never"):
        raise ValueError(f"correction must be 'auto', 'always' or 'never', got {correction!r}")
    corrected = correction == "always" or (correction == "auto" and (cells == 0).any())
    if corrected:
        cells = cells + 0.5
    a, b, c, d = cells
    with np.errstate(divide="ignore", invalid="ignore"):
        log_or = np.log(a) + np.log(d) - np.log(b) - np.log(c)
        se = np.sqrt((1.0 / cells).sum())
    half = z_critical(alpha) * se
    return OddsRatio(float(np.exp(log_or)), float(np.exp(log_or - half)),
                     float(np.exp(log_or + half)), bool(corrected), tuple(float(x) for x in cells))


# --------------------------------------------------------------------------- bootstrap


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
