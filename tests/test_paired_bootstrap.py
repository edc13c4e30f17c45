"""The paired patient-cluster bootstrap (covid_lib.stats) against brute-force resampling loops that
use the same random draws, sklearn for the metrics, and the overlap of nested test sets."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from covid_lib import stats

METRICS = stats.PAIRED_METRICS


def clustered_case(seed: int = 0, n_patients: int = 12, pos_share: float = 0.25):
    """A small test set: 1-3 images per patient, a patient's images share its label."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, n_patients)
    patient_label = (np.arange(n_patients) < max(1, round(pos_share * n_patients))).astype(int)
    groups = np.repeat([f"p{i:02d}" for i in rng.permutation(n_patients)], sizes)
    y = np.repeat(patient_label, sizes)
    a = np.round(y * 0.8 + rng.normal(0, 0.5, y.size), 1) + 0.5  # rounded: ties
    b = np.round(0.5 * a + y * 0.3 + rng.normal(0, 0.5, y.size), 1) + 0.3
    return y, a, b, groups


def metric_by_hand(metric: str, y: np.ndarray, s: np.ndarray, threshold: float) -> float:
    """The metric on a materialised sample (duplicates included); NaN where undefined."""
    pred = s >= threshold
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    sens = (pred & (y == 1)).sum() / n_pos if n_pos else np.nan
    spec = (~pred & (y == 0)).sum() / n_neg if n_neg else np.nan
    if metric == "auc":  # Mann-Whitney over all (positive, negative) pairs, ties half
        pos, neg = s[y == 1][:, None], s[y == 0][None, :]
        return ((pos > neg) + 0.5 * (pos == neg)).mean() if n_pos and n_neg else np.nan
    return {"sensitivity": sens, "specificity": spec, "balanced_accuracy": (sens + spec) / 2}[metric]


def brute_force_replicates(y, a, b, groups, metric, n_boot, seed, thr_a=0.5, thr_b=0.5):
    """Loop over the same draws as the library: patients numbered in order of first appearance,
    ``default_rng(seed).integers(0, G, (n_boot, G))``; each resample materialised explicitly."""
    codes, _ = pd.factorize(np.asarray(groups), sort=False)
    n_groups = codes.max() + 1
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))
    images = [np.flatnonzero(codes == g) for g in range(n_groups)]
    out = []
    for row in draws:
        idx = np.concatenate([images[g] for g in row])
        out.append(metric_by_hand(metric, y[idx], a[idx], thr_a) - metric_by_hand(metric, y[idx], b[idx], thr_b))
    return np.array(out)


@pytest.mark.parametrize("metric", METRICS)
def test_paired_bootstrap_equals_a_brute_force_loop_with_the_same_draws(metric):
    y, a, b, groups = clustered_case(pos_share=0.2)  # 2 of 12 patients positive
    reps = stats.paired_cluster_replicates(y, a, b, groups, metric=metric, threshold_a=1.0, threshold_b=0.9,
                                           n_boot=200, seed=3)
    brute = brute_force_replicates(y, a, b, groups, metric, 200, 3, thr_a=1.0, thr_b=0.9)
    assert np.isnan(reps).tolist() == np.isnan(brute).tolist()
    if metric != "specificity":  # with 2 of 12 patients positive about 11% of resamples lack one
        assert np.isnan(brute).sum() > 5
    np.testing.assert_allclose(reps[~np.isnan(reps)], brute[~np.isnan(brute)], rtol=0, atol=1e-12)

    r = stats.paired_cluster_bootstrap(y, a, b, groups, metric=metric, threshold_a=1.0, threshold_b=0.9,
                                       n_boot=200, seed=3, alpha=0.1)
    ok = brute[~np.isnan(brute)]
    assert r.n_boot_used == ok.size and r.n_boot == 200 and r.metric == metric
    assert (r.low, r.high) == pytest.approx(tuple(np.quantile(ok, [0.05, 0.95])), abs=1e-12)
    p_brute = min(1.0, 2 * min((1 + (ok <= 0).sum()) / (ok.size + 1), (1 + (ok >= 0).sum()) / (ok.size + 1)))
    assert r.p_value == pytest.approx(p_brute, abs=1e-12)
    point = metric_by_hand(metric, y, a, 1.0) - metric_by_hand(metric, y, b, 0.9)
    assert r.estimate == pytest.approx(point, abs=1e-12)
    assert r.value_a == pytest.approx(metric_by_hand(metric, y, a, 1.0), abs=1e-12)
    if metric == "auc":
        assert r.value_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert (r.n_groups, r.n_images) == (12, y.size)


def test_bootstrap_p_value_formula_and_direction():
    assert stats.bootstrap_p_value(np.array([0.1, 0.2, 0.3])) == pytest.approx(2 * 1 / 4)
    assert stats.bootstrap_p_value(np.array([-0.1, 0.2, 0.3, np.nan])) == pytest.approx(2 * 2 / 4)
    assert stats.bootstrap_p_value(np.array([0.0, 0.0])) == 1.0
    assert np.isnan(stats.bootstrap_p_value(np.array([np.nan])))
    y, a, b, groups = clustered_case(1, n_patients=60, pos_share=0.5)
    good = y + np.random.default_rng(0).normal(0, 0.3, y.size)
    better = stats.paired_cluster_bootstrap(y, good, b, groups, n_boot=500)
    assert better.estimate > 0 and better.low > 0 and better.p_value < 0.05
    swapped = stats.paired_cluster_bootstrap(y, b, good, groups, n_boot=500)
    assert swapped.estimate == pytest.approx(-better.estimate)
    assert (swapped.low, swapped.high) == pytest.approx((-better.high, -better.low))
    same = stats.paired_cluster_bootstrap(y, a, a, groups, n_boot=100)
    assert (same.estimate, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_patients_are_resampled_jointly_for_both_models():
    """Identical models on every resample give a zero-width interval only if both see the same patients."""
    y, a, _, groups = clustered_case(2, n_patients=40, pos_share=0.5)
    r = stats.paired_cluster_bootstrap(y, a, a + 0.0, groups, n_boot=300)
    assert r.low == r.high == 0.0
    shifted = stats.paired_cluster_bootstrap(y, a, a + 10.0, groups, n_boot=300, metric="auc")
    assert shifted.low == shifted.high == 0.0  # AUC is rank-based: a monotone shift changes nothing


def test_n_boot_zero_gives_the_estimate_only_and_bad_inputs_raise():
    y, a, b, groups = clustered_case()
    r = stats.paired_cluster_bootstrap(y, a, b, groups, n_boot=0)
    assert r.estimate == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert np.isnan(r.low) and np.isnan(r.p_value) and r.n_boot_used == 0
    with pytest.raises(ValueError, match="metric"):
        stats.paired_cluster_bootstrap(y, a, b, groups, metric="accuracy")
    with pytest.raises(ValueError, match="length"):
        stats.paired_cluster_bootstrap(y, a[:-1], b, groups)
    with pytest.raises(ValueError, match="finite"):
        stats.paired_cluster_bootstrap(y, np.where(y == 1, np.nan, a), b, groups)
    with pytest.raises(ValueError, match="0 and 1"):
        stats.paired_cluster_bootstrap(y * 2, a, b, groups)


def test_2000_replicates_on_300_images_take_well_under_a_second():
    y, a, b, groups = clustered_case(4, n_patients=170, pos_share=0.5)
    assert 250 <= y.size <= 400
    for metric in METRICS:
        start = time.perf_counter()
        stats.paired_cluster_bootstrap(y, a, b, groups, metric=metric, n_boot=2000)
        assert time.perf_counter() - start < 1.0, metric


# ------------------------------------------------------------------------------------ several sets
def long_frame(seed: int = 0, n_seeds: int = 1):
    """Test set "big" (all patients) with "small" nested in it, scored by two models per seed."""
    y, a, b, groups = clustered_case(seed, n_patients=30, pos_share=0.4)
    rng = np.random.default_rng(seed + 100)
    base = pd.DataFrame({"patient": groups, "label": y, "image": np.arange(y.size)})
    small = base[base["patient"].isin(sorted(set(groups))[:14])]
    parts = []
    for s in range(n_seeds):
        for name, part in (("big", base), ("small", small)):
            parts.append(part.assign(test_set=name, model_seed=s,
                                     score_a=a[part["image"]] + rng.normal(0, 0.3, len(part)),
                                     score_b=b[part["image"]] + rng.normal(0, 0.3, len(part))))
    return pd.concat(parts, ignore_index=True)


def test_one_set_equals_the_single_bootstrap():
    f = long_frame()
    one = f[f["test_set"] == "big"]
    out = stats.paired_cluster_bootstrap_sets(one, n_boot=300, seed=5)
    ref = stats.paired_cluster_bootstrap(one["label"], one["score_a"], one["score_b"], one["patient"], n_boot=300,
                                         seed=5)
    assert out["test_set"].tolist() == ["big", "pooled"]
    for row in (0, 1):
        got = out.iloc[row]
        assert (got["estimate"], got["low"], got["high"], got["p_value"]) == pytest.approx(
            (ref.estimate, ref.low, ref.high, ref.p_value), abs=1e-12)
        assert (got["n_boot_used"], got["n_groups"], got["n_images"]) == (ref.n_boot_used, ref.n_groups, ref.n_images)


@pytest.mark.parametrize("metric", ["auc", "balanced_accuracy"])
def test_sets_resample_each_patient_once_across_sets_and_seeds(metric):
    """Brute force: one draw of patients per replicate; every set and model seed takes that
    patient's multiplicity; per set the mean over seeds of the deltas; pooled the mean over sets."""
    f = long_frame(1, n_seeds=2)
    n_boot, seed = 150, 7
    out = stats.paired_cluster_bootstrap_sets(f, model_seed_col="model_seed", metric=metric, n_boot=n_boot,
                                              seed=seed, alpha=0.1)
    codes, _ = pd.factorize(f["patient"], sort=False)
    draws = np.random.default_rng(seed).integers(0, codes.max() + 1, size=(n_boot, codes.max() + 1))
    brute = {"big": [], "small": []}
    for row in draws:
        count = np.bincount(row, minlength=codes.max() + 1)
        for name in brute:
            deltas = []
            for s in (0, 1):
                cell = f[(f["test_set"] == name) & (f["model_seed"] == s)]
                idx = np.repeat(np.arange(len(cell)), count[codes[cell.index]])
                yy, sa, sb = (cell[c].to_numpy()[idx] for c in ("label", "score_a", "score_b"))
                deltas.append(metric_by_hand(metric, yy, sa, 0.5) - metric_by_hand(metric, yy, sb, 0.5))
            brute[name].append(np.mean(deltas))
    brute = {k: np.array(v) for k, v in brute.items()}
    brute["pooled"] = (brute["big"] + brute["small"]) / 2
    assert out["test_set"].tolist() == ["big", "small", "pooled"]
    for _, row in out.iterrows():
        reps = brute[row["test_set"]]
        ok = reps[~np.isnan(reps)]
        assert row["n_boot_used"] == ok.size
        assert (row["low"], row["high"]) == pytest.approx(tuple(np.quantile(ok, [0.05, 0.95])), abs=1e-12)
        assert row["p_value"] == pytest.approx(stats.bootstrap_p_value(reps), abs=1e-12)
        assert row["n_model_seeds"] == 2
    small = f[(f["test_set"] == "small") & (f["model_seed"] == 0)]
    assert out.iloc[1]["n_images"] == len(small) and out.iloc[1]["n_groups"] == 14
    assert out.iloc[2]["n_groups"] == 30
    assert out.iloc[2]["estimate"] == pytest.approx(out.iloc[:2]["estimate"].mean())


def test_overlap_is_not_counted_as_independent_evidence():
    """The same test set entered twice pools to exactly its own interval (resampled independently,
    the two copies would average to a narrower one)."""
    f = long_frame(2)
    big = f[f["test_set"] == "big"]
    twice = pd.concat([big, big.assign(test_set="copy")], ignore_index=True)
    out = stats.paired_cluster_bootstrap_sets(twice, n_boot=400, seed=1).set_index("test_set")
    assert out.loc["pooled", ["low", "high", "p_value"]].tolist() == pytest.approx(
        out.loc["big", ["low", "high", "p_value"]].tolist(), abs=1e-12)


def test_sets_with_cells_named_by_two_columns_and_bad_inputs():
    f = long_frame(3).assign(composition="CORDA")
    out = stats.paired_cluster_bootstrap_sets(f, set_col=["composition", "test_set"], n_boot=50, pool="median")
    assert out[["composition", "test_set"]].values.tolist() == [["CORDA", "big"], ["CORDA", "small"],
                                                               ["pooled", "pooled"]]
    with pytest.raises(ValueError, match="lacks"):
        stats.paired_cluster_bootstrap_sets(f, group_col="nope")
    with pytest.raises(ValueError, match="pooled"):
        stats.paired_cluster_bootstrap_sets(f.assign(test_set="pooled"), n_boot=10)
    with pytest.raises(ValueError, match="pool"):
        stats.paired_cluster_bootstrap_sets(f, pool="max")
