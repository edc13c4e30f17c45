"""Tests of covid_lib.metrics / covid_lib.stats against statsmodels, scipy, sklearn and
independent brute-force implementations, on synthetic arrays only."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from scipy.stats import mannwhitneyu, norm
from sklearn.metrics import (balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_recall_curve, roc_auc_score, roc_curve)
from statsmodels.stats.contingency_tables import Table2x2
from statsmodels.stats.proportion import proportion_confint

from covid_lib import stats
from covid_lib.metrics import (METRICS, BinaryMetrics, Estimate, binary_metrics, choose_threshold,
                               confusion_counts, delong_test, format_estimate)

SEEDS = [0, 1, 2, 3, 4]


def make_data(seed: int, n: int = 200, sep: float = 1.0, tie_decimals: int | None = None):
    """Labels and binormal probability scores; optionally rounded to create ties."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = expit(rng.normal(sep * (y - 0.5), 1.0))
    if tie_decimals is not None:
        s = np.round(s, tie_decimals)
    return y, s


def psi_structural(y, scores):
    """Direct O(m n) DeLong: AUCs and covariance from the Mann-Whitney kernel."""
    y = np.asarray(y, bool)
    scores = np.atleast_2d(scores)
    v10, v01, aucs = [], [], []
    for s in scores:
        x, z = s[y][:, None], s[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = y.sum(), (~y).sum()
    v10, v01 = np.array(v10), np.array(v01)
    c10 = (v10 - v10.mean(1, keepdims=True)) @ (v10 - v10.mean(1, keepdims=True)).T / (m - 1)
    c01 = (v01 - v01.mean(1, keepdims=True)) @ (v01 - v01.mean(1, keepdims=True)).T / (n - 1)
    return np.array(aucs), c10 / m + c01 / n


# --------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_wilson_matches_statsmodels_including_0_and_n(alpha):
    for n in [1, 2, 5, 17, 100, 1000]:
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ours = stats.wilson_interval(k, n, alpha)
            ref = proportion_confint(k, n, alpha=alpha, method="wilson")
            np.testing.assert_allclose(ours, ref, atol=1e-6, err_msg=f"k={k} n={n}")
    assert stats.wilson_interval(0, 10)[0] == 0.0
    assert stats.wilson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_counts_and_wilson_metrics_match_sklearn_and_statsmodels(seed):
    y, s = make_data(seed)
    thr = float(np.random.default_rng(seed).uniform(0.3, 0.7))
    m = binary_metrics(y, s, threshold=thr, n_boot=0)
    tn, fp, fn, tp = confusion_matrix(y, s >= thr, labels=[0, 1]).ravel()
    assert (m.tp, m.fp, m.fn, m.tn) == (tp, fp, fn, tn)
    assert (m.n_pos, m.n_neg) == (int(y.sum()), int((y == 0).sum()))
    for est, k, n in [(m.sensitivity, tp, tp + fn), (m.specificity, tn, tn + fp),
                      (m.accuracy, tp + tn, len(y))]:
        assert est.value == pytest.approx(k / n, abs=1e-12)
        np.testing.assert_allclose((est.low, est.high),
                                   proportion_confint(k, n, method="wilson"), atol=1e-6)
        assert est.method == "Wilson"


# --------------------------------------------------------------------------- AUC / DeLong


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [None, 1])
def test_auc_equals_sklearn_and_mann_whitney(seed, ties):
    y, s = make_data(seed, tie_decimals=ties)
    auc = binary_metrics(y, s, n_boot=0).auc.value
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert auc == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [None, 1])
def test_delong_covariance_matches_direct_structural_components(seed, ties):
    y, s1 = make_data(seed, n=150, tie_decimals=ties)
    rng = np.random.default_rng(100 + seed)
    s2 = np.round(np.clip(s1 + rng.normal(0, 0.2, s1.size), 0, 1), 2)
    s3 = rng.random(s1.size)
    scores = np.vstack([s1, s2, s3])
    auc, cov = stats.delong_covariance(y, scores)
    auc_ref, cov_ref = psi_structural(y, scores)
    np.testing.assert_allclose(auc, auc_ref, atol=1e-12)
    np.testing.assert_allclose(cov, cov_ref, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_auc_interval_formula_logit_and_plain(seed):
    y, s = make_data(seed)
    auc, cov = psi_structural(y, s)
    auc, se = auc[0], math.sqrt(cov[0, 0])
    z = norm.ppf(0.975)
    est = binary_metrics(y, s, n_boot=0).auc
    lg, se_lg = logit(auc), se / (auc * (1 - auc))
    np.testing.assert_allclose((est.low, est.high), expit([lg - z * se_lg, lg + z * se_lg]),
                               atol=1e-10)
    assert est.method == "DeLong, logit"
    plain = stats.delong_auc(y, s, transform="none")
    np.testing.assert_allclose((plain.low, plain.high),
                               np.clip([auc - z * se, auc + z * se], 0, 1), atol=1e-10)


def test_auc_interval_coverage_binormal():
    """The DeLong-logit 95% interval covers the true AUC Phi(d / sqrt 2) about 95% of the time."""
    rng = np.random.default_rng(7)
    d, true_auc, hits, n_sim = 1.5, norm.cdf(1.5 / math.sqrt(2)), 0, 400
    y = np.r_[np.ones(40, int), np.zeros(60, int)]
    for _ in range(n_sim):
        r = stats.delong_auc(y, rng.normal(d * y, 1.0))
        hits += r.low <= true_auc <= r.high
    assert 0.90 <= hits / n_sim <= 0.985


# --------------------------------------------------------------------------- paired DeLong


def test_delong_test_identical_scores_gives_p_one():
    y, s = make_data(0)
    r = delong_test(y, s, s.copy())
    assert (r.diff, r.z, r.p_value) == (0.0, 0.0, 1.0)
    assert r.auc_a == r.auc_b == pytest.approx(roc_auc_score(y, s))


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_delong_test_matches_direct_and_is_symmetric(seed):
    y, a = make_data(seed, n=160, sep=2.0)
    b = np.random.default_rng(seed).random(a.size)
    r, r_swap = delong_test(y, a, b), delong_test(y, b, a)
    auc_ref, cov_ref = psi_structural(y, np.vstack([a, b]))
    se_ref = math.sqrt(cov_ref[0, 0] + cov_ref[1, 1] - 2 * cov_ref[0, 1])
    assert r.diff == pytest.approx(auc_ref[0] - auc_ref[1], abs=1e-12)
    assert r.se == pytest.approx(se_ref, rel=1e-9)
    assert r.z == pytest.approx(r.diff / se_ref, rel=1e-9)
    assert r.p_value == pytest.approx(2 * norm.sf(abs(r.diff / se_ref)), rel=1e-9)
    assert r.p_value < 1e-4  # clearly better model
    assert r.low < r.diff < r.high
    assert r.high - r.diff == pytest.approx(norm.ppf(0.975) * se_ref, rel=1e-9)
    assert r_swap.z == pytest.approx(-r.z) and r_swap.p_value == pytest.approx(r.p_value)
    assert (r_swap.low, r_swap.high) == pytest.approx((-r.high, -r.low))
    assert (r_swap.auc_a, r_swap.auc_b) == (r.auc_b, r.auc_a)


def test_delong_test_null_rejection_rate_near_alpha():
    """Two equally good, correlated models: the 5% test rejects about 5% of the time."""
    rng = np.random.default_rng(11)
    y = np.r_[np.ones(50, int), np.zeros(50, int)]
    rejections, n_sim = 0, 400
    for _ in range(n_sim):
        common = rng.normal(y, 1.0)
        a, b = common + rng.normal(0, 0.7, y.size), common + rng.normal(0, 0.7, y.size)
        rejections += delong_test(y, a, b).p_value < 0.05
    assert 0.015 <= rejections / n_sim <= 0.10


# --------------------------------------------------------------------------- DOR


@pytest.mark.parametrize("seed", SEEDS)
def test_dor_matches_statsmodels_table2x2(seed):
    y, s = make_data(seed, sep=1.5)
    m = binary_metrics(y, s, n_boot=0)
    assert min(m.tp, m.fp, m.fn, m.tn) > 0
    t = Table2x2(np.array([[m.tp, m.fn], [m.fp, m.tn]], float))
    assert m.dor.value == pytest.approx(t.oddsratio, rel=1e-9)
    np.testing.assert_allclose((m.dor.low, m.dor.high), t.oddsratio_confint(alpha=0.05),
                               rtol=1e-9, atol=1e-6)
    assert m.dor.method == "log" and m.dor_raw == pytest.approx(m.dor.value)


@pytest.mark.parametrize("cells", [(10, 0, 3, 20), (10, 4, 0, 20), (0, 5, 6, 7), (12, 0, 0, 9)])
def test_dor_zero_cell_haldane_anscombe_matches_statsmodels_on_corrected_table(cells):
    tp, fp, fn, tn = cells
    y = np.r_[np.ones(tp + fn, int), np.zeros(fp + tn, int)]
    s = np.r_[np.full(tp, 0.9), np.full(fn, 0.1), np.full(fp, 0.8), np.full(tn, 0.2)]
    m = binary_metrics(y, s, n_boot=0)
    assert (m.tp, m.fp, m.fn, m.tn) == cells
    t = Table2x2(np.array([[tp, fn], [fp, tn]], float) + 0.5)
    assert m.dor.value == pytest.approx(t.oddsratio, rel=1e-9)
    np.testing.assert_allclose((m.dor.low, m.dor.high), t.oddsratio_confint(), rtol=1e-9)
    assert m.dor.method == "log, Haldane-Anscombe" and "zero cell" in m.dor.note
    expected_raw = np.float64(tp * tn) / np.float64(fp * fn) if fp * fn else (
        math.inf if tp * tn else math.nan)
    assert m.dor_raw == expected_raw or (math.isnan(m.dor_raw) and math.isnan(expected_raw))


# --------------------------------------------------------------------------- BA, F1, bootstrap


@pytest.mark.parametrize("seed", SEEDS)
def test_ba_and_f1_points_match_sklearn_and_intervals_contain_them(seed):
    y, s = make_data(seed)
    m = binary_metrics(y, s, n_boot=500, seed=seed)
    assert m.balanced_accuracy.value == pytest.approx(balanced_accuracy_score(y, s >= 0.5))
    assert m.f_score.value == pytest.approx(f1_score(y, s >= 0.5))
    for e in (m.balanced_accuracy, m.f_score):
        assert e.low < e.value < e.high
        assert e.method == "percentile bootstrap (n_boot=500, 200 images)"


def test_bootstrap_matches_naive_sklearn_loop():
    """Vectorised replicates equal a per-resample loop over sklearn on the same draws."""
    y, s = make_data(3, n=120)
    pred = s >= 0.5
    n_boot, seed = 200, 42
    m = binary_metrics(y, s, n_boot=n_boot, seed=seed)
    draws = np.random.default_rng(seed).integers(0, y.size, size=(n_boot, y.size))
    ba = [balanced_accuracy_score(y[i], pred[i]) for i in draws]
    f1 = [f1_score(y[i], pred[i]) for i in draws]
    np.testing.assert_allclose((m.balanced_accuracy.low, m.balanced_accuracy.high),
                               np.quantile(ba, [0.025, 0.975]), atol=1e-12)
    np.testing.assert_allclose((m.f_score.low, m.f_score.high),
                               np.quantile(f1, [0.025, 0.975]), atol=1e-12)


def test_bootstrap_is_deterministic_and_seed_dependent():
    y, s = make_data(1)
    a, b = binary_metrics(y, s, seed=5), binary_metrics(y, s, seed=5)
    c = binary_metrics(y, s, seed=6)
    assert a == b
    assert (a.balanced_accuracy.low, a.balanced_accuracy.high) != (
        c.balanced_accuracy.low, c.balanced_accuracy.high)


def test_cluster_bootstrap_one_image_per_patient_equals_image_bootstrap():
    y, s = make_data(2)
    plain = binary_metrics(y, s, seed=3)
    grouped = binary_metrics(y, s, seed=3, groups=np.arange(y.size) * 7 + 1000)
    assert grouped.bootstrap_unit == "patient"
    for k in METRICS:
        assert (grouped[k].low, grouped[k].high) == (plain[k].low, plain[k].high)


def test_cluster_bootstrap_on_duplicated_images():
    """Each image copied 5 times: resampling patients gives the BA/F interval of the unique
    images (same draws), and every interval is much wider than the ones that wrongly treat the
    copies as independent (Wilson, DeLong, log-DOR, image bootstrap)."""
    y, s = make_data(4, n=100)
    reps = 5
    yd, sd = np.repeat(y, reps), np.repeat(s, reps)
    gd = np.repeat([f"patient-{i}" for i in range(y.size)], reps)
    unique = binary_metrics(y, s, seed=9)
    cluster = binary_metrics(yd, sd, seed=9, groups=gd)
    naive = binary_metrics(yd, sd, seed=9)
    width = lambda e: e.high - e.low  # noqa: E731
    for k in METRICS:
        assert cluster[k].value == pytest.approx(unique[k].value)
        assert cluster[k].method == "cluster bootstrap (n_boot=2000, 100 groups)"
        assert width(naive[k]) < 0.7 * width(cluster[k]), k
    for k in ("balanced_accuracy", "f_score"):  # same draws as the image bootstrap of the originals
        assert (cluster[k].low, cluster[k].high) == pytest.approx((unique[k].low, unique[k].high))
    assert cluster.bootstrap_unit == "patient"


def _clustered_data(seed: int, n_patients: int = 80, per_patient: int = 3, mu: float = 1.5):
    """Patients with ``per_patient`` near-identical images: a patient effect dominates."""
    rng = np.random.default_rng(seed)
    y_p = rng.integers(0, 2, n_patients)
    y_p[:2] = [0, 1]
    u = rng.normal(mu * (y_p - 0.5), 1.0)
    y = np.repeat(y_p, per_patient)
    s = expit(np.repeat(u, per_patient) + rng.normal(0, 0.3, y.size))
    return y, s, np.repeat(np.arange(n_patients), per_patient)


def test_clustered_groups_widen_every_interval():
    y, s, g = _clustered_data(0)
    naive = binary_metrics(y, s, seed=1)
    cluster = binary_metrics(y, s, groups=g, seed=1)
    for k in METRICS:
        assert cluster[k].value == pytest.approx(naive[k].value)
        assert cluster[k].high - cluster[k].low > 1.2 * (naive[k].high - naive[k].low), k
        assert cluster[k].low <= cluster[k].value <= cluster[k].high, k
    assert naive.sensitivity.method == "Wilson" and naive.auc.method == "DeLong, logit"
    assert naive.dor.method == "log"
    d = cluster.to_dict()
    assert {d[f"{k}_method"] for k in METRICS} == {"cluster bootstrap (n_boot=2000, 80 groups)"}


def test_clustered_groups_without_resamples_give_no_interval_rather_than_a_naive_one():
    y, s, g = _clustered_data(1)
    m = binary_metrics(y, s, groups=g, n_boot=0)
    for k in METRICS:
        e = m[k]
        assert not math.isnan(e.value) and math.isnan(e.low) and math.isnan(e.high), k
        assert e.method == "none" and "n_boot > 0" in e.note, k


def test_singleton_groups_keep_the_analytic_intervals():
    y, s = make_data(2)
    plain = binary_metrics(y, s, seed=3)
    single = binary_metrics(y, s, seed=3, groups=[f"p{i}" for i in range(y.size)])
    for k in METRICS:
        assert single[k] == plain[k], k
    assert single.sensitivity.method == "Wilson" and single.dor.method.startswith("log")


def test_cluster_bootstrap_coverage_beats_the_naive_intervals():
    """Coverage of the true sensitivity and AUC over 150 simulated clustered studies: the
    cluster bootstrap stays near 95% while the intervals that assume independent images fall
    well short (the effective sample is the patients, a third of the images)."""
    mu, sd_image = 1.5, 0.3
    sd_total = math.sqrt(1.0 + sd_image**2)
    true_sens = norm.cdf(0.5 * mu / sd_total)  # P(u + e >= 0 | y = 1), u ~ N(mu / 2, 1)
    true_auc = norm.cdf(mu / (math.sqrt(2.0) * sd_total))  # binormal
    hits = {"cluster": np.zeros(2), "naive": np.zeros(2)}
    n_sim = 150
    for sim in range(n_sim):
        y, s, g = _clustered_data(100 + sim)
        for kind, m in (("cluster", binary_metrics(y, s, groups=g, n_boot=400, seed=sim)),
                        ("naive", binary_metrics(y, s, n_boot=0))):
            hits[kind] += [m.sensitivity.low <= true_sens <= m.sensitivity.high,
                           m.auc.low <= true_auc <= m.auc.high]
    cover = {k: v / n_sim for k, v in hits.items()}
    assert (cover["cluster"] >= 0.88).all() and (cover["naive"] <= 0.85).all(), cover


def test_weighted_auc_equals_auc_of_the_copied_sample():
    y, s = make_data(5, n=60, tie_decimals=1)
    assert stats.weighted_auc(y, s, np.ones((1, y.size)))[0] == pytest.approx(roc_auc_score(y, s))
    w = np.random.default_rng(0).integers(0, 3, (4, y.size))
    for row in w:
        idx = np.repeat(np.arange(y.size), row)
        assert stats.weighted_auc(y, s, row[None])[0] == pytest.approx(roc_auc_score(y[idx], s[idx]))
    assert np.isnan(stats.weighted_auc(np.ones(3, bool), [0.1, 0.2, 0.3], np.ones((1, 3)))[0])


def test_bootstrap_ci_of_the_mean_resamples_groups():
    rng = np.random.default_rng(0)
    values = rng.normal(0.9, 0.05, 200)
    lo, hi = stats.bootstrap_ci(values, n_boot=2000)
    assert lo < values.mean() < hi and hi - lo < 0.03
    # 200 values in 10 tight clusters: the effective sample is 10, so the interval is wider.
    groups = np.repeat(np.arange(10), 20)
    clustered = np.repeat(rng.normal(0.9, 0.05, 10), 20) + rng.normal(0, 0.001, 200)
    lo_c, hi_c = stats.bootstrap_ci(clustered, groups=groups, n_boot=2000)
    lo_i, hi_i = stats.bootstrap_ci(clustered, n_boot=2000)
    assert hi_c - lo_c > 3 * (hi_i - lo_i)
    assert np.isnan(stats.bootstrap_ci([])[0])


def test_bootstrap_replicates_draw_units_as_documented():
    """Weights are the multiplicities of ``default_rng(seed).integers(0, G, (n_boot, G))``,
    whatever the chunking; the statistic sees them."""
    x = np.arange(7.0)
    groups = ["a", "a", "b", "c", "c", "c", "d"]
    seen = []
    reps = stats.bootstrap_replicates(lambda w: seen.append(w.shape) or w @ x, 7, groups=groups,
                                      n_boot=50, seed=4, chunk=16)
    draws = np.random.default_rng(4).integers(0, 4, (50, 4))
    unit_sums = np.array([0 + 1, 2, 3 + 4 + 5, 6])
    np.testing.assert_allclose(reps, unit_sums[draws].sum(axis=1))
    assert seen == [(16, 7)] * 3 + [(2, 7)]
    again = stats.bootstrap_replicates(lambda w: w @ x, 7, groups=groups, n_boot=50, seed=4)
    np.testing.assert_array_equal(reps, again)


def test_groups_validation():
    y, s = make_data(0, n=20)
    with pytest.raises(ValueError, match="one id per image"):
        binary_metrics(y, s, groups=np.arange(19))
    with pytest.raises(ValueError, match="missing ids"):
        binary_metrics(y, s, groups=[None] + list(range(19)))


# --------------------------------------------------------------------------- edge cases


def test_perfect_separation_like_paper_table_iv():
    y = np.r_[np.ones(8, int), np.zeros(7, int)]
    s = np.r_[np.linspace(0.6, 0.99, 8), np.linspace(0.01, 0.4, 7)]
    m = binary_metrics(y, s)
    assert m.auc.value == 1.0 == roc_auc_score(y, s)
    assert (m.auc.low, m.auc.high) == (1.0, 1.0)
    assert m.sensitivity.value == m.specificity.value == m.balanced_accuracy.value == 1.0
    assert m.f_score.value == 1.0
    assert m.dor_raw == math.inf and math.isfinite(m.dor.value)
    assert m.dor.method == "log, Haldane-Anscombe"
    assert m.dor.value == pytest.approx((8.5 * 7.5) / (0.5 * 0.5))
    assert m.sensitivity.high == 1.0 and m.sensitivity.low < 1.0


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_only_gives_nan_not_crash(label):
    s = np.linspace(0.05, 0.95, 12)
    m = binary_metrics(np.full(12, label), s)
    assert math.isnan(m.auc.value) and "one class" in m.auc.note
    assert math.isnan(m.balanced_accuracy.value) and math.isnan(m.dor.value)
    missing, present = ("specificity", "sensitivity") if label == 1 else (
        "sensitivity", "specificity")
    assert math.isnan(m[missing].value) and "undefined" in m[missing].note
    assert m[present].value == pytest.approx(0.5)
    assert m.accuracy.value == pytest.approx(0.5)
    assert m.to_frame().shape == (7, 6)


def test_f_score_undefined_without_positives_or_predicted_positives():
    m = binary_metrics(np.zeros(6, int), np.full(6, 0.1))
    assert math.isnan(m.f_score.value) and m.specificity.value == 1.0


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_tied_scores_and_threshold_inclusive(seed):
    y, s = make_data(seed, tie_decimals=1)
    s[:10] = 0.5
    m = binary_metrics(y, s, n_boot=0)
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.5).ravel()
    assert (m.tp, m.fp, m.fn, m.tn) == (tp, fp, fn, tn)
    constant = binary_metrics(y, np.full(y.size, 0.3), n_boot=0)
    assert constant.auc.value == 0.5 == roc_auc_score(y, np.full(y.size, 0.3))


def test_single_case_in_a_class_gives_auc_without_interval():
    y = np.r_[1, np.zeros(9, int)]
    m = binary_metrics(y, np.linspace(0.1, 0.9, 10)[::-1], n_boot=0)
    assert m.auc.value == 1.0
    m2 = binary_metrics(y, np.r_[0.5, np.linspace(0.1, 0.9, 9)], n_boot=0)
    assert m2.auc.value == pytest.approx(roc_auc_score(y, np.r_[0.5, np.linspace(0.1, 0.9, 9)]))
    assert math.isnan(m2.auc.low) and "not estimable" in m2.auc.note


@pytest.mark.parametrize("y, s, match", [
    ([0, 1, 1], [0.1, np.nan, np.nan], "2 NaN and 0 infinite"),
    ([0, 1, 1], [0.1, np.inf, 0.3], "0 NaN and 1 infinite"),
    ([0, 1, 1], [0.1, 0.2], "different lengths: 3 != 2"),
    ([0, 2, 1], [0.1, 0.2, 0.3], "only 0 and 1"),
    (["neg", "pos"], [0.1, 0.2], "0/1 or boolean"),
    ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ([], [], "empty"),
    ([0, 1], ["a", "b"], "numeric"),
    ([0, 1, 1], [-2.0, 0.3, 3.0], "outside \\[0, 1\\]"),
])
def test_input_validation_messages(y, s, match):
    with pytest.raises(ValueError, match=match):
        binary_metrics(y, s)


def test_scores_outside_unit_interval_ok_with_explicit_threshold():
    y, p = make_data(0)
    logits = logit(p)
    a, b = binary_metrics(y, p, n_boot=0), binary_metrics(y, logits, threshold=0.0, n_boot=0)
    assert (a.tp, a.fp, a.fn, a.tn) == (b.tp, b.fp, b.fn, b.tn)
    assert a.auc.value == pytest.approx(b.auc.value)


def test_boolean_labels_and_hard_predictions():
    y = np.array([True, False, True, True, False])
    m = binary_metrics(y, y.astype(int), n_boot=0)
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 0, 0, 2) and m.auc.value == 1.0
    assert confusion_counts(y, [0.6, 0.2, 0.4, 0.9, 0.7]).to_dict() == {
        "tp": 2, "fp": 1, "fn": 1, "tn": 1, "n_pos": 3, "n_neg": 2}


def test_bad_alpha_and_n_boot():
    y, s = make_data(0, n=20)
    with pytest.raises(ValueError, match="alpha"):
        binary_metrics(y, s, alpha=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        binary_metrics(y, s, n_boot=-1)
    with pytest.raises(ValueError, match="both classes"):
        delong_test(np.ones(5), np.arange(5) / 5, np.arange(5) / 5)


def test_alpha_changes_interval_width():
    y, s = make_data(0)
    m90, m99 = binary_metrics(y, s, alpha=0.10), binary_metrics(y, s, alpha=0.01)
    for k in METRICS:
        assert m99[k].high - m99[k].low > m90[k].high - m90[k].low, k


# --------------------------------------------------------------------------- threshold choice


@pytest.mark.parametrize("seed", SEEDS)
def test_choose_threshold_youden_attains_roc_maximum(seed):
    y, s = make_data(seed, tie_decimals=2 if seed % 2 else None)
    t = choose_threshold(y, s, criterion="youden")
    fpr, tpr, _ = roc_curve(y, s)
    c = confusion_counts(y, s, threshold=t)
    j = c.tp / c.n_pos + c.tn / c.n_neg - 1
    assert j == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    assert choose_threshold(y, s, criterion="balanced_accuracy") == t
    assert s.min() <= t <= s.max()


@pytest.mark.parametrize("seed", SEEDS)
def test_choose_threshold_f1_attains_pr_maximum(seed):
    y, s = make_data(seed, sep=0.5)
    t = choose_threshold(y, s, criterion="f1")
    prec, rec, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        best = np.nanmax(2 * prec * rec / (prec + rec))
    assert f1_score(y, s >= t) == pytest.approx(best, abs=1e-12)


def test_choose_threshold_separable_validation_falls_in_gap_and_closest_topleft():
    y = np.r_[np.zeros(5, int), np.ones(5, int)]
    s = np.r_[0.1, 0.2, 0.25, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9, 0.95]
    assert choose_threshold(y, s) == pytest.approx((0.35 + 0.6) / 2)
    assert choose_threshold(y, s, criterion="closest_topleft") == pytest.approx(0.475)
    with pytest.raises(ValueError, match="criterion"):
        choose_threshold(y, s, criterion="accuracy")
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.ones(4), [0.1, 0.2, 0.3, 0.4])


# --------------------------------------------------------------------------- result type


def test_result_type_frame_dict_and_format():
    y, s = make_data(0)
    m = binary_metrics(y, s, n_boot=300)
    assert isinstance(m, BinaryMetrics)
    df = m.to_frame()
    assert list(df.columns) == ["metric", "value", "low", "high", "method", "note"]
    assert tuple(df["metric"]) == METRICS
    assert df.set_index("metric").loc["auc", "value"] == m.auc.value
    d = m.to_dict()
    assert d["tp"] == m.tp and d["dor_low"] == m.dor.low and d["auc_method"] == "DeLong, logit"
    assert pd.DataFrame([d]).shape[0] == 1
    with pytest.raises(KeyError):
        m["precision"]
    with pytest.raises(Exception):
        m.auc.value = 0.3  # frozen
    assert set(m.formatted(labels=True)) == {"Sensitivity", "Specificity", "F-Score", "Accuracy",
                                             "BA", "AUC", "DOR"}


def test_format_estimate():
    assert Estimate(0.912, 0.8, 0.9649, "Wilson").format() == "0.91 [0.80, 0.96]"
    assert str(Estimate(0.912, 0.8, 0.9649, "Wilson")) == "0.91 [0.80, 0.96]"
    assert format_estimate(122.666, 20.1, math.inf) == "122.67 [20.10, ∞]"
    assert format_estimate(math.nan) == "n/a"
    assert format_estimate(0.5, math.nan, math.nan, digits=3) == "0.500"


def test_macro_auc_and_mean_estimate_intervals():
    from sklearn.metrics import roc_auc_score

    from covid_lib.metrics import macro_auc, mean_estimate

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    probs = rng.dirichlet([1, 1, 1], 120) + np.eye(3)[y] * 0.5
    probs /= probs.sum(1, keepdims=True)
    est = macro_auc(y, probs, n_boot=300)
    assert est.value == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert est.low < est.value < est.high and "percentile" in est.method
    two = macro_auc(y % 2, np.c_[1 - probs[:, 1], probs[:, 1]], n_boot=100)
    assert two.value == pytest.approx(roc_auc_score(y % 2, probs[:, 1]))
    groups = np.repeat(np.arange(30), 4)  # clustered: intervals widen, method says so
    clustered = macro_auc(y, probs, groups=groups, n_boot=300)
    assert "cluster bootstrap" in clustered.method and "30 groups" in clustered.method
    acc = mean_estimate((probs.argmax(1) == y).astype(float), groups=groups, n_boot=300)
    assert acc.value == pytest.approx((probs.argmax(1) == y).mean()) and acc.low <= acc.value <= acc.high
    assert np.isnan(macro_auc(np.zeros(5, int), np.full((5, 2), 0.5), n_boot=10).value)


# --------------------------------------------------------------------------- collapsed models


def test_collapse_status_flags_the_conv8_outputs_and_passes_a_usable_model():
    from covid_lib.metrics import collapse_status

    rng = np.random.default_rng(0)
    conv8 = rng.uniform(0.45713, 0.45734, 120)  # issue 16: two Conv8s, every image in this range
    reason = collapse_status(conv8)
    assert reason.startswith("all scores below the threshold 0.5; score spread ")
    assert reason.endswith(" < 1e-03 (5-95% range)")
    spread = float(reason.split("spread ")[1].split(" <")[0])
    assert spread == pytest.approx(np.subtract(*np.quantile(conv8, [0.95, 0.05])), rel=0.05) and spread < 2.1e-4
    y, s = make_data(1)  # binormal scores crossing 0.5
    assert collapse_status(s) is None
    assert collapse_status(rng.uniform(0.6, 0.99, 50)) == "all scores at or above the threshold 0.5"
    assert collapse_status(np.r_[0.5, rng.uniform(0.6, 0.99, 50)]).startswith("all scores at or above")
    assert collapse_status(rng.uniform(0.6, 0.99, 50), threshold=0.8) is None
    around = 0.5 + np.linspace(-2e-4, 2e-4, 101)  # crosses the threshold, but barely moves
    assert collapse_status(around) == "score spread 3.6e-04 < 1e-03 (5-95% range)"


def test_collapse_status_spread_is_the_5_95_range():
    from covid_lib.metrics import collapse_status

    flat = np.r_[np.full(97, 0.3), [0.9, 0.1, 0.7]]
    assert "score spread 0.0e+00" in collapse_status(flat)  # 3 outliers in 100 do not make a model
    confident = np.r_[np.full(80, 0.001), np.full(20, 0.999)]  # IQR 0, but the scores separate
    assert collapse_status(confident) is None
    assert collapse_status(np.linspace(0.4, 0.6, 101), min_spread=0.2) == \
        "score spread 1.8e-01 < 2e-01 (5-95% range)"
    with pytest.raises(ValueError, match="NaN"):
        collapse_status([0.2, np.nan, 0.7])


def test_auc_estimate_is_binary_metrics_auc_by_its_rule():
    """:func:`auc_estimate` is where binary_metrics' AUC comes from: DeLong (logit) without
    groups or with one image per group, the patient-cluster bootstrap otherwise (then the
    percentile interval of :func:`covid_lib.stats.weighted_auc` over whole patients resampled)."""
    from covid_lib import stats
    from covid_lib.metrics import auc_estimate, binary_metrics

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    s = np.clip(0.3 * y + rng.uniform(0, 0.7, 80), 0, 1)
    for groups, method in ((None, "DeLong, logit"), (np.arange(80), "DeLong, logit"),
                           (np.repeat(np.arange(40), 2), "cluster bootstrap (n_boot=300, 40 groups)")):
        est = auc_estimate(y, s, groups=groups, n_boot=300, seed=1)
        assert est == binary_metrics(y, s, groups=groups, n_boot=300, seed=1).auc and est.method == method
    est = auc_estimate(y, s, groups=np.repeat(np.arange(40), 2), n_boot=300, seed=1)
    reps = stats.bootstrap_replicates(lambda w: stats.weighted_auc(y, s, w), y.size,
                                      groups=np.repeat(np.arange(40), 2), n_boot=300, seed=1)
    low, high, _ = stats.percentile_interval(reps, 0.05)
    assert (est.low, est.high) == (low, high) and est.value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    one_class = auc_estimate(np.ones(80, int), s, groups=np.repeat(np.arange(40), 2), n_boot=300, seed=1)
    assert np.isnan([one_class.value, one_class.low, one_class.high]).all()  # NaN, no error
