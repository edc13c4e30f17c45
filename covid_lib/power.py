"""Power of paired model comparisons with patients as the unit, and the effects a test set can detect.

Two models scored on the same test images are compared by ``metric(a) - metric(b)``. The verdicts
use the paired patient-cluster bootstrap (:func:`covid_lib.stats.paired_cluster_bootstrap`); to
say what effect a test set *could* have detected, this module simulates that comparison many
times on the test set's own structure (its patients, their number of images and their labels)
and runs a fast cluster-robust analytic test on each simulated data set:

* :func:`clustered_paired_auc_test` -- paired difference of two AUCs with the clustered
  (patient-level) DeLong variance of Obuchowski (1997). With one image per patient it equals
  :func:`covid_lib.stats.delong_test`.
* :func:`clustered_paired_proportion_test` -- paired difference of sensitivities, specificities
  or balanced accuracies with the cluster-robust (ratio-estimator, "sandwich") variance of
  Rao & Scott (1992) / Obuchowski (1998); equal to an intercept-only regression of the per-image
  difference with cluster-robust standard errors.
* :func:`simulated_power`, :func:`minimum_detectable_effect` and :func:`patients_needed` -- power
  by simulation, the smallest effect detectable with a given power, and the number of test
  patients a target effect would need.

Simulation model (binormal with patient random effects): the latent value of image ``j`` of
patient ``i`` under model ``m`` is ``sqrt(icc) u_im + sqrt(1 - icc) e_ijm`` with standard normal
``u`` (patient) and ``e`` (image), ``corr(u_iA, u_iB) = corr(e_ijA, e_ijB) = rho_models``, so the
latent values have unit variance, intra-class correlation ``icc`` between a patient's images and
correlation ``rho_models`` between the two models on an image. For the AUC the score is
``mu_m * y + latent`` with ``mu_m = sqrt(2) Phi^-1(AUC_m)`` (the binormal AUC of a positive and a
negative image of different patients is ``Phi(mu / sqrt 2)``). For the rates an image is
classified correctly when ``latent < Phi^-1(rate_m)``, which gives the rate exactly, with the
same clustering and correlation (a latent-threshold, i.e. probit, model).

Random numbers are common to every effect size tried in one call (the same latent draws, only the
means or cut-offs move), so the estimated power is a smooth, almost monotone function of the
effect and the search for the minimum detectable effect is stable.

References
----------
DeLong ER, DeLong DM, Clarke-Pearson DL (1988). Comparing the areas under two or more correlated
    ROC curves: a nonparametric approach. Biometrics 44:837-845.
Obuchowski NA (1997). Nonparametric analysis of clustered ROC curve data. Biometrics 53:567-578.
Obuchowski NA (1998). On the comparison of correlated proportions for clustered data. Statistics
    in Medicine 17:1495-1507.
Rao JNK, Scott AJ (1992). A simple method for the analysis of clustered binary data. Biometrics
    48:577-585.
Burton A, Altman DG, Royston P, Holder RL (2006). The design of simulation studies in medical
    statistics. Statistics in Medicine 25:4279-4292.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from covid_lib.stats import (PAIRED_METRICS, bootstrap_p_value, group_codes, paired_cluster_replicates,
                             z_critical)

#: Tests :func:`simulated_power` can run on each simulated data set.
POWER_TESTS: tuple[str, ...] = ("clustered", "image", "bootstrap")
DIRECTIONS: tuple[str, ...] = ("increase", "decrease")
_NAN = float("nan")


# ------------------------------------------------------------------------------------------ tests
@dataclass(frozen=True)
class ClusteredPairedTest:
    """A paired, cluster-robust comparison ``value_a - value_b`` of two models on the same images.

    ``estimate = value_a - value_b``; ``se`` its cluster-robust standard error; ``z = estimate /
    se``; ``p_value`` two-sided (normal); ``low``/``high`` the ``1 - alpha`` Wald interval.
    """

    metric: str
    value_a: float
    value_b: float
    estimate: float
    se: float
    z: float
    p_value: float
    low: float
    high: float
    n_groups: int
    n_images: int
    alpha: float


def _onehot(codes: np.ndarray, n_groups: int) -> np.ndarray:
    h = np.zeros((codes.size, n_groups))
    h[np.arange(codes.size), codes] = 1.0
    return h


def _auc_stats(y: np.ndarray, a: np.ndarray, b: np.ndarray, codes: np.ndarray,
               n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs of ``a`` and ``b`` (each ``(S, N)``: S data sets on the same images) and the
    Obuchowski (1997) variance of their difference, each ``(S,)``.

    Structural components by midranks (Sun & Xu 2014): ``V10`` of a positive image is the share
    of negatives it outranks (ties half), ``V01`` of a negative the share of positives that
    outrank it. Summed per patient (``V10_i``, ``V01_i``, with ``m_i`` positives and ``n_i``
    negatives), with ``r10_i = V10_i - m_i AUC`` and ``r01_i = V01_i - n_i AUC``::

        S10 = I10 / ((I10 - 1) M) sum_i r10_i^2      S01 = I01 / ((I01 - 1) N) sum_i r01_i^2
        S11 = I / (I - 1) sum_i r10_i r01_i          var = S10 / M + S01 / N + 2 S11 / (M N)

    (``M``, ``N``: positive and negative images; ``I10``, ``I01``: patients with a positive, a
    negative image; ``I``: all patients), applied to the differences ``r^a - r^b``.
    """
    m, n = int(y.sum()), int((~y).sum())
    h = _onehot(codes, n_groups)
    h10, h01 = h[y], h[~y]
    mi, ni = h10.sum(axis=0), h01.sum(axis=0)
    i10, i01, i_all = int((mi > 0).sum()), int((ni > 0).sum()), int(((mi + ni) > 0).sum())

    def parts(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos, neg = s[:, y], s[:, ~y]
        tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
        v10 = (tz[:, :m] - rankdata(pos, axis=1)) / n
        v01 = 1.0 - (tz[:, m:] - rankdata(neg, axis=1)) / m
        return v10.mean(axis=1), v10, v01

    auc_a, v10a, v01a = parts(a)
    auc_b, v10b, v01b = parts(b)
    d = auc_a - auc_b
    r10 = (v10a - v10b) @ h10 - mi * d[:, None]
    r01 = (v01a - v01b) @ h01 - ni * d[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        s10 = i10 / ((i10 - 1) * m) * (r10 ** 2).sum(axis=1) if i10 > 1 else np.full(d.shape, np.nan)
        s01 = i01 / ((i01 - 1) * n) * (r01 ** 2).sum(axis=1) if i01 > 1 else np.full(d.shape, np.nan)
        s11 = i_all / (i_all - 1) * (r10 * r01).sum(axis=1)
    return auc_a, auc_b, s10 / m + s01 / n + 2.0 * s11 / (m * n)


def _rate_stats(y: np.ndarray, correct_a: np.ndarray, correct_b: np.ndarray, codes: np.ndarray,
                n_groups: int, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rates of ``a`` and ``b`` (``(S, N)`` correct-classification indicators) and the
    cluster-robust variance of their difference, each ``(S,)``.

    For a class with ``n_c`` images the difference is ``d = sum_i D_i / n_c`` (``D_i``: patient
    ``i``'s sum of ``correct_a - correct_b`` over its images of that class); its influence per
    patient is ``(D_i - n_ci d) / n_c`` and ``var = I' / (I' - 1) sum_i infl_i^2`` over the ``I'``
    patients with an image of that class (Rao & Scott 1992; the ``I'/(I'-1)`` factor is the usual
    small-sample correction, as in statsmodels' cluster-robust covariance). Balanced accuracy
    averages the two classes' influences, over all patients.
    """
    h = _onehot(codes, n_groups)
    diff = correct_a.astype(float) - correct_b.astype(float)
    out_a, out_b, infl, used = [], [], [], np.zeros(n_groups, dtype=bool)
    classes = {"sensitivity": (True,), "specificity": (False,), "balanced_accuracy": (True, False)}[metric]
    for cls in classes:
        sel = y == cls
        n_c = int(sel.sum())
        hc = h[sel]
        with np.errstate(divide="ignore", invalid="ignore"):
            ra, rb = correct_a[:, sel].mean(axis=1), correct_b[:, sel].mean(axis=1)
            infl.append((diff[:, sel] @ hc - hc.sum(axis=0) * (ra - rb)[:, None]) / n_c)
        out_a.append(ra)
        out_b.append(rb)
        used |= hc.sum(axis=0) > 0
    k = len(classes)
    value_a, value_b, influence = sum(out_a) / k, sum(out_b) / k, sum(infl) / k
    g = int(used.sum())
    var = g / (g - 1) * (influence ** 2).sum(axis=1) if g > 1 else np.full(value_a.shape, np.nan)
    return value_a, value_b, var


def _z_p(diff: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(se, z, two-sided p)``; a zero variance gives ``z = 0, p = 1`` for equal values and
    ``z = +-inf, p = 0`` otherwise (as :func:`covid_lib.stats.delong_test`)."""
    se = np.where(var > 1e-15, np.sqrt(np.where(var > 1e-15, var, 1.0)), np.where(np.isnan(var), np.nan, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, diff / np.where(se > 0, se, 1.0),
                     np.where(np.abs(diff) < 1e-12, 0.0, np.copysign(np.inf, diff)))
    z = np.where(np.isnan(se) | np.isnan(diff), np.nan, z)
    return se, z, 2.0 * norm.sf(np.abs(z))


def _result(metric: str, va: float, vb: float, var: float, alpha: float, n_groups: int,
            n_images: int) -> ClusteredPairedTest:
    diff = va - vb
    se, z, p = (float(x[0]) for x in _z_p(np.array([diff]), np.array([var])))
    half = z_critical(alpha) * se
    return ClusteredPairedTest(metric, float(va), float(vb), float(diff), se, z, p, diff - half, diff + half,
                               n_groups, n_images, alpha)


def _inputs(y_true, score_a, score_b, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be 1-D with only 0 and 1 (1 = COVID+)")
    a, b = np.asarray(score_a, dtype=float).ravel(), np.asarray(score_b, dtype=float).ravel()
    if a.size != y.size or b.size != y.size:
        raise ValueError(f"y_true, score_a and score_b differ in length: {y.size}, {a.size}, {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite")
    return y.astype(bool), a, b, group_codes(groups, y.size)


def clustered_paired_auc_test(y_true, score_a, score_b, groups, *, alpha: float = 0.05) -> ClusteredPairedTest:
    """Paired test of ``AUC_a == AUC_b`` with patients as the unit (clustered DeLong, Obuchowski 1997).

    The AUC is the usual image-level Mann-Whitney AUC over all (positive, negative) image pairs;
    its variance and the covariance between the two models come from per-patient sums of the
    DeLong structural components, so a patient's images are not treated as independent (see
    :func:`_auc_stats` for the formulas). With one image per patient the variance is DeLong's,
    and the result equals :func:`covid_lib.stats.delong_test`.

    Parameters
    ----------
    y_true
        0/1 labels (both classes present); a patient may have images of both classes.
    score_a, score_b
        The two models' scores on the same images.
    groups
        Patient id of each image.
    alpha
        One minus the coverage of the interval of the difference.
    """
    y, a, b, codes = _inputs(y_true, score_a, score_b, groups)
    if y.all() or not y.any():
        raise ValueError("the AUC test needs both classes in y_true")
    n_groups = int(codes.max()) + 1
    va, vb, var = _auc_stats(y, a[None], b[None], codes, n_groups)
    return _result("auc", va[0], vb[0], var[0], alpha, n_groups, y.size)


def clustered_paired_proportion_test(y_true, score_a, score_b, groups, *, metric: str = "specificity",
                                     threshold_a: float = 0.5, threshold_b: float = 0.5,
                                     alpha: float = 0.05) -> ClusteredPairedTest:
    """Paired, cluster-robust test of equal sensitivity, specificity or balanced accuracy.

    Each model predicts COVID+ when ``score >= threshold`` (pass 0/1 predictions with the default
    0.5). The difference of the two rates is a ratio estimator over patients; its variance is
    the cluster-robust (sandwich) variance of Rao & Scott (1992) and Obuchowski (1998) -- see
    :func:`_rate_stats` -- which with one image per patient is the variance of a paired
    difference of proportions (the Wald form of McNemar's test, with an ``I/(I-1)`` factor).

    Parameters
    ----------
    metric
        ``"sensitivity"`` (positives only), ``"specificity"`` (negatives only) or
        ``"balanced_accuracy"``.
    """
    if metric not in PAIRED_METRICS or metric == "auc":
        raise ValueError(f"metric must be sensitivity, specificity or balanced_accuracy, got {metric!r}")
    y, a, b, codes = _inputs(y_true, score_a, score_b, groups)
    need = {"sensitivity": y.any(), "specificity": (~y).any(), "balanced_accuracy": y.any() and (~y).any()}
    if not need[metric]:
        raise ValueError(f"{metric} is undefined: a class it needs is missing from y_true")
    n_groups = int(codes.max()) + 1
    ca, cb = (a >= threshold_a) == y, (b >= threshold_b) == y
    va, vb, var = _rate_stats(y, ca[None], cb[None], codes, n_groups, metric)
    return _result(metric, va[0], vb[0], var[0], alpha, n_groups, y.size)


# ------------------------------------------------------------------------------------- simulation
def _check(metric: str, base: float, test: str, direction: str, icc: float, rho_models: float) -> None:
    if metric not in PAIRED_METRICS:
        raise ValueError(f"metric must be one of {PAIRED_METRICS}, got {metric!r}")
    if test not in POWER_TESTS:
        raise ValueError(f"test must be one of {POWER_TESTS}, got {test!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not 0.0 <= icc < 1.0 or not -1.0 < rho_models < 1.0:
        raise ValueError(f"need 0 <= icc < 1 and -1 < rho_models < 1, got {icc}, {rho_models}")
    low = 0.5 if metric == "auc" else 0.0
    if not low <= base < 1.0:
        raise ValueError(f"base must be in [{low}, 1) for {metric}, got {base}")


def _latent(rng: np.random.Generator, codes: np.ndarray, n_groups: int, n_sim: int, rho: float,
            icc: float) -> np.ndarray:
    """``(2, n_sim, N)`` latent values: unit variance, ICC ``icc``, correlation ``rho`` between models."""
    u = rng.standard_normal((2, n_sim, n_groups))
    e = rng.standard_normal((2, n_sim, codes.size))
    c = math.sqrt(1.0 - rho * rho)
    u[1] = rho * u[0] + c * u[1]
    e[1] = rho * e[0] + c * e[1]
    return math.sqrt(icc) * u[:, :, codes] + math.sqrt(1.0 - icc) * e


def _max_delta(metric: str, base: float, direction: str) -> float:
    if metric == "auc":
        return (1.0 - 1e-4 - base) if direction == "increase" else (base - 1e-4)
    return (1.0 - base) if direction == "increase" else base


class _Simulator:
    """Latent draws for one test-set structure, reused for every effect size (common random numbers)."""

    def __init__(self, y: np.ndarray, codes: np.ndarray, *, metric: str, base: float, alpha: float, n_sim: int,
                 rho_models: float, icc: float, seed: int, test: str, direction: str, n_boot: int) -> None:
        self.y, self.codes, self.metric, self.base, self.alpha = y, codes, metric, base, alpha
        self.test, self.sign, self.n_boot, self.seed = test, (1.0 if direction == "increase" else -1.0), n_boot, seed
        self.n_groups = int(codes.max()) + 1
        self.latent = _latent(np.random.default_rng(seed), codes, self.n_groups, n_sim, rho_models, icc)

    def data(self, delta: float) -> tuple[np.ndarray, np.ndarray]:
        """Scores (AUC) or correct-classification indicators (rates) of models a and b."""
        va = self.base + self.sign * delta
        if self.metric == "auc":
            mu_a, mu_b = (math.sqrt(2.0) * norm.ppf(min(max(v, 1e-12), 1 - 1e-12)) for v in (va, self.base))
            return mu_a * self.y + self.latent[0], mu_b * self.y + self.latent[1]
        return self.latent[0] < norm.ppf(va), self.latent[1] < norm.ppf(self.base)

    def rejections(self, delta: float) -> np.ndarray:
        """Whether each simulated comparison rejects at ``alpha`` (two-sided) in the true direction
        (at ``delta = 0`` in either direction, so that the power there is the test's size)."""
        a, b = self.data(delta)
        if self.test == "bootstrap":
            diff, p = np.empty(a.shape[0]), np.empty(a.shape[0])
            for s in range(a.shape[0]):
                sa, sb = (a[s], b[s]) if self.metric == "auc" else \
                    ((a[s] == self.y).astype(float), (b[s] == self.y).astype(float))
                reps = paired_cluster_replicates(self.y, sa, sb, self.codes, metric=self.metric,
                                                 n_boot=self.n_boot, seed=self.seed + 1 + s)
                diff[s], p[s] = np.nanmean(reps), bootstrap_p_value(reps)
        else:
            codes, g = (self.codes, self.n_groups) if self.test == "clustered" else \
                (np.arange(self.y.size), self.y.size)
            if self.metric == "auc":
                va, vb, var = _auc_stats(self.y, a, b, codes, g)
            else:
                va, vb, var = _rate_stats(self.y, a, b, codes, g, self.metric)
            diff = va - vb
            p = _z_p(diff, var)[2]
        if delta == 0.0:  # no true direction: the test's size, both tails
            return p < self.alpha
        return (p < self.alpha) & (np.sign(diff) == self.sign)

    def power(self, delta: float) -> float:
        return float(self.rejections(delta).mean())


def _structure(y_true, groups, metric: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0 or not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be 1-D, non-empty, with only 0 and 1 (1 = COVID+)")
    y = y.astype(bool)
    need_pos, need_neg = metric in ("auc", "sensitivity", "balanced_accuracy"), metric != "sensitivity"
    if (need_pos and not y.any()) or (need_neg and y.all()):
        raise ValueError(f"{metric} needs a class that y_true lacks")
    return y, group_codes(groups, y.size)


def simulated_power(y_true, groups, *, delta: float, metric: str = "auc", base: float = 0.80, alpha: float = 0.05,
                    n_sim: int = 200, rho_models: float = 0.5, icc: float = 0.3, seed: int = 0,
                    test: str = "clustered", direction: str = "increase", n_boot: int = 200) -> float:
    """Probability that a paired test on this test set's structure detects ``metric_a - metric_b = delta``.

    Simulates ``n_sim`` comparisons of model b (``metric = base``) and model a (``base + delta``,
    or ``base - delta`` with ``direction="decrease"``) on the same patients, images per patient
    and labels as ``y_true``/``groups`` (model: see the module docstring), and counts the two-sided
    rejections at ``alpha`` in the true direction (Burton et al. 2006); at ``delta = 0`` all
    rejections, i.e. the test's size. The Monte-Carlo standard
    error is ``sqrt(p (1 - p) / n_sim)``.

    Parameters
    ----------
    test
        ``"clustered"`` (default): :func:`clustered_paired_auc_test` or
        :func:`clustered_paired_proportion_test` (patients as the unit); ``"image"``: the same
        tests with every image its own patient (paired DeLong; ignores clustering, so with
        ``icc > 0`` it rejects too often); ``"bootstrap"``: the verdicts' paired cluster bootstrap
        with ``n_boot`` replicates (slow: ``n_sim`` bootstraps).
    """
    _check(metric, base, test, direction, icc, rho_models)
    if not 0.0 <= delta <= _max_delta(metric, base, direction) + 1e-12:
        raise ValueError(f"delta {delta} leaves the metric's range from base {base} ({direction})")
    y, codes = _structure(y_true, groups, metric)
    sim = _Simulator(y, codes, metric=metric, base=base, alpha=alpha, n_sim=n_sim, rho_models=rho_models, icc=icc,
                     seed=seed, test=test, direction=direction, n_boot=n_boot)
    return sim.power(delta)


@dataclass(frozen=True)
class DetectableEffect:
    """Result of :func:`minimum_detectable_effect`.

    ``delta`` is the smallest effect (to within ``tol``) whose simulated power reaches
    ``target_power`` (NaN when even the largest possible effect does not; ``note`` says so);
    ``power`` the simulated power at ``delta``.
    """

    metric: str
    base: float
    delta: float
    power: float
    target_power: float
    alpha: float
    test: str
    direction: str
    n_sim: int
    icc: float
    rho_models: float
    n_groups: int
    n_images: int
    n_pos: int
    n_neg: int
    note: str = ""


def minimum_detectable_effect(y_true, groups, *, metric: str = "auc", base: float = 0.80, power: float = 0.80,
                              alpha: float = 0.05, n_sim: int = 200, rho_models: float = 0.5, icc: float = 0.3,
                              seed: int = 0, test: str = "clustered", direction: str = "increase",
                              n_boot: int = 200, tol: float = 0.0025) -> DetectableEffect:
    """Smallest ``delta`` that a paired test on this test set detects with probability ``>= power``.

    Bisection on ``delta`` in ``[0, largest possible]`` of :func:`simulated_power` with common
    random numbers (one set of ``n_sim`` latent draws for every ``delta``), to within ``tol``.
    The test set's structure (patients, images per patient, labels) is that of
    ``y_true``/``groups``; ``base`` is model b's metric (the reference model), ``icc`` the
    intra-patient correlation and ``rho_models`` the correlation between the two models (see the
    module docstring; both unknown for a future comparison, so report the values used, or
    several). A few milliseconds per call for a few hundred images with the default test.

    Returns
    -------
    DetectableEffect
    """
    _check(metric, base, test, direction, icc, rho_models)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    y, codes = _structure(y_true, groups, metric)
    sim = _Simulator(y, codes, metric=metric, base=base, alpha=alpha, n_sim=n_sim, rho_models=rho_models, icc=icc,
                     seed=seed, test=test, direction=direction, n_boot=n_boot)
    lo, hi = 0.0, _max_delta(metric, base, direction)
    p_hi, note = sim.power(hi), ""
    if p_hi < power:
        delta, note = _NAN, (f"power {p_hi:.2f} < {power:g} even at the largest effect {hi:.3f}: "
                             "no effect in range is detectable with that power")
    else:
        while hi - lo > tol:
            mid = (lo + hi) / 2.0
            p_mid = sim.power(mid)
            if p_mid >= power:
                hi, p_hi = mid, p_mid
            else:
                lo = mid
        delta = hi
    return DetectableEffect(metric, base, delta, p_hi, power, alpha, test, direction, n_sim, icc, rho_models,
                            sim.n_groups, int(y.size), int(y.sum()), int((~y).sum()), note)


# ------------------------------------------------------------------------------------ sample size
def scaled_structure(y_true, groups, n_patients: int) -> tuple[np.ndarray, np.ndarray]:
    """A test set of ``n_patients`` patients with the same label mix and images per patient.

    Patients are ordered so that every prefix keeps the mix of patient types (number of positive
    and negative images): each type's patients are spread evenly over the order, by their rank
    within the type. The new set takes that order cyclically (whole copies of the test set, then
    a prefix). Returns ``(labels, patient codes)``.
    """
    y = np.asarray(y_true).astype(bool)
    codes = group_codes(groups, y.size)
    g = int(codes.max()) + 1
    n_pos, n_all = np.bincount(codes, weights=y, minlength=g), np.bincount(codes, minlength=g)
    kind = n_pos * (n_all.max() + 1) + (n_all - n_pos)
    key = np.empty(g)
    for k in np.unique(kind):
        members = np.flatnonzero(kind == k)
        key[members] = (np.arange(members.size) + 0.5) / members.size
    order = np.lexsort((kind, key))
    images = [np.flatnonzero(codes == i) for i in range(g)]
    chosen = order[np.arange(n_patients) % g]
    idx = np.concatenate([images[i] for i in chosen])
    new_codes = np.repeat(np.arange(n_patients), [images[i].size for i in chosen])
    return y[idx], new_codes


@dataclass(frozen=True)
class PatientsNeeded:
    """Result of :func:`patients_needed`: ``n_patients`` (None when ``max_patients`` do not reach
    ``target_power``), their images and classes, and the simulated power there and now."""

    metric: str
    base: float
    delta: float
    target_power: float
    n_patients: int | None
    n_images: int | None
    n_pos: int | None
    n_neg: int | None
    power: float
    current_patients: int
    current_power: float
    test: str
    icc: float
    rho_models: float
    n_sim: int


def patients_needed(y_true, groups, *, delta: float, metric: str = "auc", base: float = 0.80, power: float = 0.80,
                    alpha: float = 0.05, n_sim: int = 200, rho_models: float = 0.5, icc: float = 0.3, seed: int = 0,
                    test: str = "clustered", direction: str = "increase", n_boot: int = 200,
                    max_patients: int = 20_000, rel_tol: float = 0.02) -> PatientsNeeded:
    """How many test patients, with this test set's label mix and images per patient, give ``power``
    to detect ``delta``.

    Power at ``n`` patients is :func:`simulated_power` on :func:`scaled_structure` (same ``seed``
    for every ``n``); doubling from the current size (or halving down to it) brackets the answer,
    and integer bisection narrows it to within ``rel_tol`` (reported: the upper end, whose
    simulated power reaches the target). Power is estimated, so the answer carries Monte-Carlo
    error of a few percent at ``n_sim=200``.
    """
    _check(metric, base, test, direction, icc, rho_models)
    y, codes = _structure(y_true, groups, metric)
    g = int(codes.max()) + 1

    def power_at(n: int) -> float:
        yy, cc = scaled_structure(y, codes, n)
        ok = {"auc": yy.any() and (~yy).any(), "sensitivity": yy.sum() > 1, "specificity": (~yy).sum() > 1,
              "balanced_accuracy": yy.any() and (~yy).any()}[metric]
        if not ok:
            return 0.0
        return simulated_power(yy, cc, delta=delta, metric=metric, base=base, alpha=alpha, n_sim=n_sim,
                               rho_models=rho_models, icc=icc, seed=seed, test=test, direction=direction,
                               n_boot=n_boot)

    current = power_at(g)
    if current >= power:
        lo, hi, p_hi = 1, g, current
        while hi > 2:
            half = hi // 2
            p_half = power_at(half)
            if p_half < power:
                lo = half
                break
            hi, p_hi = half, p_half
    else:
        lo, hi, p_hi = g, g, current
        while p_hi < power:
            lo, hi = hi, min(2 * hi, max_patients)
            p_hi = power_at(hi)
            if hi == max_patients and p_hi < power:
                return PatientsNeeded(metric, base, delta, power, None, None, None, None, p_hi, g, current, test,
                                      icc, rho_models, n_sim)
    while hi - lo > max(1, math.ceil(rel_tol * hi)):
        mid = (lo + hi) // 2
        p_mid = power_at(mid)
        if p_mid >= power:
            hi, p_hi = mid, p_mid
        else:
            lo = mid
    yy, _ = scaled_structure(y, codes, hi)
    return PatientsNeeded(metric, base, delta, power, int(hi), int(yy.size), int(yy.sum()), int((~yy).sum()), p_hi,
                          g, current, test, icc, rho_models, n_sim)
