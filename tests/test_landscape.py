"""The latent landscape (covid_lib.analysis.landscape, covid_lib.report.landscape): SOM purity against a
permutation chance, determinism under a seed, age groups, the stratified cap, the figures, and one
smoke run on real data through records, checkpoints and the chain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covid_lib.analysis import landscape as L
from covid_lib.report import landscape as rl


def two_clusters(n=60, shift=10.0, seed=0, dim=8):
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(0, 1, (n, dim)), rng.normal(shift, 1, (n, dim))]
    rows = pd.DataFrame({"source": np.repeat(["kermany", "nih"], n), "label": rng.integers(0, 2, 2 * n),
                         "age_group": np.repeat([L.AGE_GROUPS[0], L.AGE_GROUPS[1]], n),
                         "group_id": [f"p{i // 2}" for i in range(2 * n)]})
    return X, rows


def test_purity_by_hand_and_against_a_contingency_table():
    nodes = np.array([0, 0, 0, 1, 1, 2])
    labels = np.array(["a", "a", "b", "b", "b", "a"])
    assert L.purity(nodes, labels) == pytest.approx((2 + 2 + 1) / 6)
    rng = np.random.default_rng(1)
    nodes, labels = rng.integers(0, 7, 200), rng.choice(list("xyz"), 200)
    ct = pd.crosstab(nodes, labels).to_numpy()
    assert L.purity(nodes, labels) == pytest.approx(ct.max(1).sum() / ct.sum())
    w = rng.integers(0, 3, (4, 200)).astype(float)
    by_hand = [(pd.crosstab(nodes, labels, values=wi, aggfunc="sum").fillna(0).to_numpy().max(1).sum() / wi.sum())
               for wi in w]
    np.testing.assert_allclose(L.weighted_purity(nodes, labels, w), by_hand)


def test_separated_clusters_are_pure_and_shuffled_labels_are_at_chance():
    X, rows = two_clusters()
    fit = L.fit_som(X, seed=0)
    t = L.purity_table({"map": fit}, rows, n_boot=200, n_perm=100).set_index("target")
    src = t.loc["source"]
    assert src["purity"] > 0.99 and src["excess"] > 0.95 and src["p_perm"] < 0.02
    assert src["chance"] < 0.9  # the permutation floor is well below a perfectly separated map
    lab = t.loc["label"]  # random labels: purity no better than their own permutations
    assert lab["excess_low"] < 0 < lab["excess_high"] or abs(lab["excess"]) < 0.15
    assert lab["p_perm"] > 0.05
    assert abs(lab["purity"] - lab["chance"]) < 0.08
    assert t.loc["age_group", "purity"] == pytest.approx(src["purity"])  # age follows source here


def test_permutation_chance_exceeds_one_over_classes_on_small_nodes():
    nodes = np.repeat(np.arange(50), 2)  # two hits per node: at least half of each node agrees
    labels = np.tile([0, 1], 50)
    chance = L.permutation_chance(nodes, labels, n_perm=300, seed=0)
    assert 0.7 < chance.mean() < 0.8  # 1/2 + P(both equal)/2 = 0.75, not 1/classes
    assert L.purity(nodes, labels) == 0.5


def test_paired_change_between_maps():
    X, rows = two_clusters()
    noise = np.random.default_rng(5).normal(size=X.shape)
    t = L.purity_table({"noise": L.fit_som(noise, seed=0), "clusters": L.fit_som(X, seed=0)}, rows,
                       n_boot=200, n_perm=50)
    r = t.set_index(["encoder", "target"])
    assert np.isnan(r.loc[("noise", "source"), "change"])
    assert r.loc[("clusters", "source"), "change_low"] > 0.5
    assert r.loc[("clusters", "source"), "change"] == pytest.approx(
        r.loc[("clusters", "source"), "excess"] - r.loc[("noise", "source"), "excess"])
    assert r.loc[("clusters", "label"), "change_low"] < 0.3


def test_som_is_deterministic_under_a_seed_and_has_errors():
    X, _ = two_clusters(seed=3)
    a, b, c = L.fit_som(X, seed=7), L.fit_som(X, seed=7), L.fit_som(X, seed=8)
    np.testing.assert_array_equal(a.som.get_weights(), b.som.get_weights())
    np.testing.assert_array_equal(a.nodes, b.nodes)
    assert not np.array_equal(a.som.get_weights(), c.som.get_weights())
    assert a.shape == L.som_shape(len(X)) and a.nodes.max() < a.shape[0] * a.shape[1]
    assert a.quantization_error > 0 and 0 <= a.topographic_error <= 1
    assert a.hits().sum() == len(X) and a.u_matrix().shape == a.shape
    # a map on tiny clusters far apart: quantisation error below the gap between them
    assert a.quantization_error < 10.0 * np.sqrt(X.shape[1]) / 2


def test_som_shape_rule():
    assert L.som_shape(480) == (10, 11)  # about 5 * sqrt(480) = 110 nodes
    assert L.som_shape(1) == (2, 3)


def test_age_groups():
    ages = pd.Series([0, 5, 17.9, 18, 40, 64.9, 65, 90, np.nan, -3, np.nan, np.nan])
    source = pd.Series(["nih"] * 10 + ["kermany", "shenzhen"])
    g = L.age_group(ages, source)
    c, a, o, u = L.AGE_GROUPS
    assert g.tolist() == [c, c, c, a, a, a, o, o, u, u, c, u]
    assert L.age_group(ages).iloc[10] == u  # without the source, an absent age is unknown
    assert L.age_group(pd.Series(["71", "x"])).tolist() == [o, u]


def test_stratified_cap_keeps_proportions_and_every_stratum():
    rows = pd.DataFrame({"label": [0] * 90 + [1] * 9 + [2], "age_group": "x", "i": range(100)})
    out = L.stratified_cap(rows, 20, ["label", "age_group"], seed=0)
    assert len(out) == 20 and out["i"].is_unique
    counts = out["label"].value_counts().to_dict()
    assert counts[2] == 1 and 1 <= counts[1] <= 3 and counts[0] >= 16
    assert L.stratified_cap(rows, 20, ["label"], seed=0)["i"].tolist() == \
        L.stratified_cap(rows, 20, ["label"], seed=0)["i"].tolist()
    assert len(L.stratified_cap(rows, None, ["label"])) == 100


def test_landscape_rows_on_a_synthetic_manifest():
    rng = np.random.default_rng(0)
    parts = []
    for source, n, covid, age in (("cohen", 50, [0, 1], True), ("hannover", 20, [1], True),
                                  ("kermany", 40, [0], False), ("nih", 40, [0], True),
                                  ("montgomery", 10, [np.nan], False), ("shenzhen", 30, [np.nan], False)):
        parts.append(pd.DataFrame({
            "source": source, "image_id": [f"{source}{i}" for i in range(n)],
            "group_id": [f"{source}:{i}" for i in range(n)],
            "split": rng.choice(["train", "test"], n), "frontal": True, "location": "",
            "covid": rng.choice(covid, n), "age": rng.integers(1, 90, n).astype(float) if age else np.nan}))
    m = pd.concat(parts, ignore_index=True)
    m.loc[0, "frontal"] = False
    m.loc[1, ["location", "split"]] = ["Hannover Medical School, Germany", "test"]
    rows = L.landscape_rows(m, per_source=8, seed=0)
    assert (rows["split"] == "test").all() and (rows.groupby("source").size() <= 8).all()
    assert list(dict.fromkeys(rows["source"])) == list(L.SOURCES)
    assert not rows["image_id"].isin(["cohen0", "cohen1"]).any()
    assert rows.loc[rows["source"] == "shenzhen", "label"].eq(0).all()
    assert rows.loc[rows["source"] == "kermany", "age_group"].eq(L.AGE_GROUPS[0]).all()
    assert rows.loc[rows["source"] == "montgomery", "age_group"].eq(L.AGE_GROUPS[3]).all()
    assert rows.equals(L.landscape_rows(m, per_source=8, seed=0))


def test_report_tables_and_figures():
    X, rows = two_clusters(n=30)
    fits = {"a": L.fit_som(X, seed=0), "b": L.fit_som(X[:, ::-1], seed=1)}
    t = L.purity_table(fits, rows, n_boot=50, n_perm=20)
    f = rl.format_purity(t)
    assert len(f) == 6 and f["purity [95% CI]"].str.contains(r"\[").all()
    assert set(rl.map_quality(t)["encoder"]) == {"a", "b"}
    text = rl.conclusion(t, "b", "a")
    assert "organised more by source" in text and "changes by" in text
    assert "missing" in rl.conclusion(t, "c")
    import matplotlib

    matplotlib.use("Agg")
    assert len(rl.plot_som(fits["a"], rows, "a").axes) >= 4
    assert len(rl.plot_hits(fits["a"], rows).axes) >= 2
    assert len(rl.plot_tsne({"a": X[:, :2], "b": X[:, 2:4]}, rows).axes) == 6
    assert len(rl.plot_purity(t).axes) == 1


@pytest.mark.data
@pytest.mark.slow
def test_landscape_of_smoke_runs(data_root, tmp_path, monkeypatch):
    """Two table2 smoke encoders trained into a tmp results dir and the session's tmp cache; the
    third stays missing."""
    from covid_lib import runs
    from covid_lib.analysis import embed
    from covid_lib.data import global_splits

    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    records = rl.encoder_records("smoke", data_root=data_root)
    assert records["status"].eq("missing").all() and list(records["role"]) == ["before", "after", "scratch"]
    scratch = records.set_index("role").loc["scratch", "spec"]
    before = records.set_index("role").loc["before", "spec"]
    runs.run(scratch, data_root=data_root, device="cpu", progress=False)
    runs.run(before, data_root=data_root, device="cpu", progress=False)
    records = rl.encoder_records("smoke", data_root=data_root)
    status = records.set_index("role")["status"]
    assert status["after"] == "missing"  # smoke models may not learn; their features are still read
    assert status["before"] in runs.LEARNED and status["scratch"] in runs.LEARNED  # smoke models may collapse
    rows = L.landscape_rows(global_splits(data_root), per_source=4)
    assert set(rows["source"]) == set(L.SOURCES) and (rows.groupby("source").size() <= 4).all()
    assert set(rows["age_group"]) <= set(L.AGE_GROUPS) and (rows[rows["source"] == "kermany"]["age_group"]
                                                            == L.AGE_GROUPS[0]).all()
    feats, kept = rl.encoder_features(records, rows, data_root=data_root)
    assert set(feats) == set(records[records["status"].isin(runs.LEARNED)]["encoder"])
    assert all(f.shape == (len(kept), 512) for f in feats.values()) and len(kept) > 6
    fits = {n: L.fit_som(embed.prepare_features(f, 10), seed=0) for n, f in feats.items()}
    t = L.purity_table(fits, kept, n_boot=50, n_perm=20)
    assert len(t) == 3 * len(fits) and t["purity"].between(0, 1).all()
