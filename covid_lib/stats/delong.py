"""DeLong AUC intervals and the paired DeLong test.

* :func:`delong_covariance`, :func:`delong_auc` and :func:`delong_test` -- the AUC, its variance
  and the paired test of two AUCs after DeLong, DeLong & Clarke-Pearson (1988), computed with the
  fast midrank algorithm of Sun & Xu (2014), which handles tied scores exactly.

References
----------
DeLong ER, DeLong DM, Clarke-Pearson DL (1988). Comparing the areas under two or more correlated
    receiver operating characteristic curves: a nonparametric approach. Biometrics 44:837-845.
Sun X, Xu W (2014). Fast implementation of DeLong's algorithm for comparing the areas under
    correlated receiver operating characteristic curves. IEEE Signal Process Lett 21:1389-1393.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from covid_lib.stats.intervals import z_critical


def _check_delong_inputs(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1 (1 = COVID+)")
    y = y.astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != y.size:
        raise ValueError(f"scores have {s.shape[1]} columns but y_true has {y.size} labels")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite values")
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

    The library's one paired DeLong test (re-exported by :mod:`covid_lib.metrics`). Images are
    its units: where patients have several images use
    :func:`covid_lib.power.clustered_paired_auc_test` or, for verdicts,
    :func:`paired_cluster_bootstrap`. Labels must be 0/1 (both present), scores finite.

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
