"""Patient-level paired tests and power by simulation (covid_lib.power) against DeLong, a brute-force
Obuchowski (1997) computation, statsmodels' cluster-robust regression and closed-form power."""

from __future__ import annotations

import time

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.stats import multivariate_normal, norm, ttest_1samp
from sklearn.metrics import roc_auc_score
from statsmodels.stats.power import NormalIndPower

from covid_lib import power as pw
from covid_lib import stats


def clustered(seed: int, n_patients: int = 60, max_images: int = 4, mixed: bool = False):
    """Labels, two correlated models' scores (rounded: ties) and patient ids; with ``mixed`` a
    patient may have images of both classes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_images + 1, n_patients)
    groups = np.repeat(np.arange(n_patients), sizes)
    y = rng.integers(0, 2, groups.size) if mixed else np.repeat(rng.integers(0, 2, n_patients), sizes)
    y[:2] = [0, 1] if mixed else y[:2]
    u = rng.normal(0, 0.8, n_patients)[groups]
    a = np.round(y + u + rng.normal(0, 1, y.size), 1)
    b = np.round(0.6 * y + u + 0.5 * a + rng.normal(0, 1, y.size), 1)
    return y, a, b, groups


# ------------------------------------------------------------------------------------------- AUC
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clustered_auc_test_equals_delong_with_one_image_per_patient(seed):
    y, a, b, _ = clustered(seed, mixed=True)
    r = pw.clustered_paired_auc_test(y, a, b, np.arange(y.size), alpha=0.1)
    d = stats.delong_test(y, a, b, alpha=0.1)
    for mine, theirs in [(r.value_a, d.auc_a), (r.value_b, d.auc_b), (r.estimate, d.diff), (r.se, d.se),
                         (r.z, d.z), (r.p_value, d.p_value), (r.low, d.low), (r.high, d.high)]:
        assert abs(mine - theirs) < 1e-10
    assert r.value_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)


def obuchowski_by_hand(y, a, b, groups):
    """Obuchowski (1997) written out with explicit loops over patients and all image pairs."""
    pats = sorted(set(groups))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = pos.size, neg.size

    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    def components(s):
        v10 = {i: sum(psi(s[i], s[j]) for j in neg) / n for i in pos}
        v01 = {j: sum(psi(s[i], s[j]) for i in pos) / m for j in neg}
        theta = sum(v10.values()) / m
        r10 = [sum(v10[i] for i in pos if groups[i] == p) - theta * sum(groups[i] == p for i in pos) for p in pats]
        r01 = [sum(v01[j] for j in neg if groups[j] == p) - theta * sum(groups[j] == p for j in neg) for p in pats]
        return theta, np.array(r10), np.array(r01)

    ta, r10a, r01a = components(a)
    tb, r10b, r01b = components(b)
    i10 = sum(any(groups[i] == p for i in pos) for p in pats)
    i01 = sum(any(groups[j] == p for j in neg) for p in pats)
    big_i = len(pats)

    def cov(r10x, r01x, r10z, r01z):
        s10 = i10 / ((i10 - 1) * m) * np.sum(r10x * r10z)
        s01 = i01 / ((i01 - 1) * n) * np.sum(r01x * r01z)
        s11 = big_i / (big_i - 1) * np.sum(r10x * r01z)
        s11_t = big_i / (big_i - 1) * np.sum(r10z * r01x)
        return s10 / m + s01 / n + (s11 + s11_t) / (m * n)

    var = cov(r10a, r01a, r10a, r01a) + cov(r10b, r01b, r10b, r01b) - 2 * cov(r10a, r01a, r10b, r01b)
    return ta - tb, np.sqrt(var)


@pytest.mark.parametrize("mixed", [False, True])
def test_clustered_auc_test_equals_obuchowski_written_out(mixed):
    y, a, b, groups = clustered(3, n_patients=25, mixed=mixed)
    r = pw.clustered_paired_auc_test(y, a, b, groups)
    diff, se = obuchowski_by_hand(y, a, b, groups)
    assert r.estimate == pytest.approx(diff, abs=1e-12) and r.se == pytest.approx(se, rel=1e-10)
    assert r.p_value == pytest.approx(2 * norm.sf(abs(diff / se)), rel=1e-9)
    assert (r.n_groups, r.n_images) == (25, y.size)


# ----------------------------------------------------------------------------------------- rates
@pytest.mark.parametrize("metric", ["sensitivity", "specificity", "balanced_accuracy"])
def test_proportion_test_equals_statsmodels_cluster_robust_regression(metric):
    """Per-image differences of correct classification regressed on the class indicators with
    patient-clustered errors: each coefficient is a difference of rates (sensitivity, specificity),
    balanced accuracy their mean; statsmodels' small-sample factor is G/(G-1) (N-1)/(N-K), ours
    G/(G-1), so its variance is divided by (N-1)/(N-K)."""
    y, a, b, groups = clustered(4, n_patients=80, mixed=True)
    r = pw.clustered_paired_proportion_test(y, a, b, groups, metric=metric, threshold_a=0.5, threshold_b=0.8)
    d = ((a >= 0.5) == y).astype(float) - ((b >= 0.8) == y).astype(float)
    keep = {"sensitivity": y == 1, "specificity": y == 0, "balanced_accuracy": np.ones(y.size, bool)}[metric]
    x = np.column_stack([y == 1, y == 0]).astype(float)[keep]
    x = x[:, x.any(axis=0)]
    fit = sm.OLS(d[keep], x).fit(cov_type="cluster", cov_kwds={"groups": groups[keep]})
    c = np.full(x.shape[1], 1.0 / x.shape[1])
    n, k = keep.sum(), x.shape[1]
    assert r.estimate == pytest.approx(c @ fit.params, abs=1e-12)
    assert r.se == pytest.approx(np.sqrt(c @ fit.cov_params() @ c * (n - k) / (n - 1)), rel=1e-10)
    if metric == "sensitivity":
        pos = y == 1
        assert (r.value_a, r.value_b) == pytest.approx(((a[pos] >= 0.5).mean(), (b[pos] >= 0.8).mean()))


def test_proportion_test_with_one_image_per_patient_is_the_paired_t_statistic():
    y, a, b, _ = clustered(5, n_patients=90)
    neg = y == 0
    r = pw.clustered_paired_proportion_test(y, a, b, np.arange(y.size), metric="specificity", threshold_a=0.3)
    d = (a[neg] < 0.3).astype(float) - (b[neg] < 0.5).astype(float)
    assert r.z == pytest.approx(ttest_1samp(d, 0.0).statistic, rel=1e-10)
    with pytest.raises(ValueError, match="metric"):
        pw.clustered_paired_proportion_test(y, a, b, np.arange(y.size), metric="auc")


# ------------------------------------------------------------------------------------------ power
def closed_form_paired_power(p_a: float, p_b: float, rho: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided Wald test of a paired difference of proportions from ``n`` independent
    pairs, whose correct/incorrect outcomes are thresholded bivariate normals with correlation
    ``rho`` (the simulation's model): statsmodels' one-sample normal power at effect ``d / sd``."""
    p11 = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([norm.ppf(p_a), norm.ppf(p_b)])
    sd = np.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b) - 2 * (p11 - p_a * p_b))
    return NormalIndPower().power(effect_size=(p_a - p_b) / sd, nobs1=n, alpha=alpha, ratio=0)


@pytest.mark.parametrize("delta", [0.06, 0.10])
def test_simulated_power_matches_the_closed_form_for_independent_patients(delta):
    n_neg = 150
    y = np.r_[np.zeros(n_neg, int), np.ones(30, int)]
    groups = np.arange(y.size)
    sim = pw.simulated_power(y, groups, delta=delta, metric="specificity", base=0.8, n_sim=10000, rho_models=0.5,
                             icc=0.3, seed=1)
    expected = closed_form_paired_power(0.8 + delta, 0.8, 0.5, n_neg)
    assert 0.25 < expected < 0.95
    # Monte-Carlo SE about 0.005; the normal approximation runs about 0.01 below the Wald test it describes
    assert sim == pytest.approx(expected, abs=0.03)


def test_patients_needed_matches_the_closed_form_sample_size():
    y, groups = np.zeros(60, int), np.arange(60)
    out = pw.patients_needed(y, groups, delta=0.1, metric="specificity", base=0.8, power=0.8, n_sim=2000,
                             rho_models=0.5, seed=2)
    p11 = multivariate_normal(mean=[0, 0], cov=[[1, 0.5], [0.5, 1]]).cdf([norm.ppf(0.9), norm.ppf(0.8)])
    sd = np.sqrt(0.9 * 0.1 + 0.8 * 0.2 - 2 * (p11 - 0.72))
    n = NormalIndPower().solve_power(effect_size=0.1 / sd, alpha=0.05, power=0.8, ratio=0)
    assert out.n_patients == pytest.approx(n, rel=0.12)
    assert out.current_patients == 60 and out.current_power < 0.8 <= out.power
    assert out.n_neg == out.n_images == out.n_patients


def test_clustered_test_keeps_its_size_where_the_image_level_test_does_not():
    y, _, _, groups = clustered(6, n_patients=120)
    kw = dict(delta=0.0, n_sim=2000, icc=0.8, rho_models=0.0, seed=3)
    for metric in ("auc", "specificity"):
        size = pw.simulated_power(y, groups, metric=metric, **kw)
        naive = pw.simulated_power(y, groups, metric=metric, test="image", **kw)
        assert 0.03 <= size <= 0.075, metric
        assert naive > 0.09, metric


def test_minimum_detectable_effect_is_where_power_crosses_the_target():
    y, _, _, groups = clustered(7, n_patients=80)
    kw = dict(metric="auc", base=0.75, n_sim=300, icc=0.3, rho_models=0.5, seed=4)
    start = time.perf_counter()
    mde = pw.minimum_detectable_effect(y, groups, **kw)
    assert time.perf_counter() - start < 5.0
    assert mde.power >= 0.8 and 0.02 < mde.delta < 0.25 and not mde.note
    assert pw.simulated_power(y, groups, delta=mde.delta, **kw) == mde.power
    assert pw.simulated_power(y, groups, delta=mde.delta - 0.01, **kw) < 0.8
    bigger = pw.scaled_structure(y, groups, 320)
    assert pw.minimum_detectable_effect(*bigger, **kw).delta < mde.delta / 1.5
    tiny = pw.minimum_detectable_effect(np.zeros(4, int), np.arange(4), metric="specificity", base=0.8)
    assert np.isnan(tiny.delta) and "even at the largest effect" in tiny.note
    down = pw.minimum_detectable_effect(y, groups, metric="specificity", base=0.8, direction="decrease", n_sim=300)
    assert 0 < down.delta <= 0.8


def test_scaled_structure_keeps_the_label_mix_and_images_per_patient():
    y, _, _, groups = clustered(8, n_patients=40)
    yy, cc = pw.scaled_structure(y, groups, 80)
    assert yy.sum() == 2 * y.sum() and yy.size == 2 * y.size and cc.max() == 79
    sizes = np.sort(np.bincount(groups))
    assert (np.sort(np.bincount(cc)) == np.sort(np.r_[sizes, sizes])).all()
    half_y, half_c = pw.scaled_structure(y, groups, 20)
    pos_patients = np.bincount(half_c, weights=half_y) > 0
    assert abs(pos_patients.mean() - (np.bincount(groups, weights=y) > 0).mean()) <= 0.1


def test_bootstrap_test_in_the_simulation_agrees_with_the_analytic_one():
    y, _, _, groups = clustered(9, n_patients=50)
    kw = dict(delta=0.12, base=0.75, n_sim=40, seed=5)
    analytic = pw.simulated_power(y, groups, **kw)
    boot = pw.simulated_power(y, groups, test="bootstrap", n_boot=200, **kw)
    assert 0.2 < analytic < 0.95 and abs(boot - analytic) <= 0.2


def test_bad_arguments():
    y, _, _, groups = clustered(0)
    with pytest.raises(ValueError, match="test"):
        pw.simulated_power(y, groups, delta=0.1, test="exact")
    with pytest.raises(ValueError, match="icc"):
        pw.minimum_detectable_effect(y, groups, icc=1.0)
    with pytest.raises(ValueError, match="range"):
        pw.simulated_power(y, groups, delta=0.3, base=0.8)
    with pytest.raises(ValueError, match="lacks"):
        pw.minimum_detectable_effect(np.zeros(10, int), np.arange(10), metric="auc")
