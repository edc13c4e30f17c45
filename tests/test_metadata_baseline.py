"""The metadata-only baseline (covid_lib.analysis.metadata_baseline): synthetic compositions, one real one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from covid_lib.analysis import metadata_baseline as mb


def _composition(name: str, n: int = 120, seed: int = 0, signal: str = "year") -> pd.DataFrame:
    """Synthetic composed rows: ``signal`` (year or view) carries the label, the rest is noise."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    year = np.where(label == 1, 2020, rng.choice([2004, 2012, 2016, 2020], n)) if signal == "year" \
        else rng.choice([2019, 2020], n)
    view = np.where(label == 1, "AP", "PA") if signal == "view" else rng.choice(["AP", "PA"], n)
    date = np.where(rng.random(n) < 0.1, "", year.astype(str))
    patients = [f"{name}:p{i // 2}" for i in range(n)]
    return pd.DataFrame({
        "composition": name, "image_id": [f"{name}:{i}" for i in range(n)], "patient_id": patients,
        "group_id": patients, "split": np.where(np.arange(n) % 3 == 0, "test", "train"), "label": label,
        "source": "cohen", "view": view, "date": date,
        "age": np.where(rng.random(n) < 0.1, "", rng.integers(20, 90, n).astype(float).astype(str)),
        "sex": rng.choice(["M", "F", ""], n), "orig_width": rng.integers(400, 3000, n),
        "orig_height": rng.integers(400, 3000, n), "orig_format": rng.choice(["PNG", "JPEG"], n),
        "orig_mode": rng.choice(["L", "RGB"], n), "image_path": "/nowhere/never/read.png",
    })


@pytest.fixture(scope="module")
def composed() -> dict[str, pd.DataFrame]:
    return {"A": _composition("A", seed=1), "B": _composition("B", seed=2, signal="view")}


def test_features_are_metadata_only(composed):
    x = mb.feature_frame(composed["A"])
    assert list(x.columns) == ["view", "year", "age", "sex", "format", "width", "height"]
    assert x.loc[composed["A"]["sex"] == "", "sex"].eq("missing").all()
    with pytest.raises(ValueError, match="unknown feature groups"):
        mb.feature_frame(composed["A"], ("pixels",))


def test_table_auc_matches_sklearn_and_layout(composed):
    scores = mb.baseline_scores(composed=composed, proxies=True)  # composition A plants its signal in the year
    table = mb.table_from_scores(scores, n_boot=200)
    assert list(table.columns) == mb.TABLE_COLUMNS
    assert len(table) == 4 and set(zip(table["composition"], table["test_set"])) == {
        ("A", "A"), ("A", "B"), ("B", "A"), ("B", "B")}
    for _, row in table.iterrows():
        part = scores[(scores["composition"] == row["composition"]) & (scores["test_set"] == row["test_set"])]
        assert row["auc"] == pytest.approx(roc_auc_score(part["label"], part["score"]), abs=1e-12)
        assert row["auc_low"] <= row["auc"] <= row["auc_high"]
        assert row["n_images"] == len(part) and row["n_patients"] == part["patient_id"].nunique()
    own = table.set_index(["composition", "test_set"])["auc"]
    assert own[("A", "A")] > 0.8 and own[("B", "B")] > 0.9  # the planted signal is found
    assert own[("A", "B")] < 0.75  # year carries nothing in B: the shortcut does not transfer


def test_deterministic_and_boosting_works(composed):
    a = mb.table_from_scores(mb.baseline_scores(composed=composed, seed=3), n_boot=100, seed=3)
    b = mb.table_from_scores(mb.baseline_scores(composed=composed, seed=3), n_boot=100, seed=3)
    pd.testing.assert_frame_equal(a, b)
    boost = mb.baseline_scores(composed=composed, model="boosting")
    assert boost["score"].between(0, 1).all() and (boost["model"] == "boosting").all()
    with pytest.raises(ValueError, match="unknown model"):
        mb.baseline_scores(composed=composed, model="svm")


def test_cluster_auc_resamples_patients_and_handles_one_class():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    auc, low, high = mb.cluster_auc(y, s, list("aabbcc"), n_boot=500)
    assert auc == pytest.approx(roc_auc_score(y, s))
    assert 0 <= low <= auc <= high <= 1
    assert np.isnan(mb.cluster_auc(np.ones(4), s[:4], list("abcd"))[0])


def test_importances_name_what_the_model_uses(composed):
    imp = mb.baseline_importances(composed=composed, n_repeats=5)
    perm = imp[imp["kind"] == "permutation"].set_index(["composition", "group"])["value"]
    assert perm.xs("A").idxmax() == "year" and perm.xs("B").idxmax() == "view"
    coef = imp[(imp["kind"] == "coefficient") & (imp["composition"] == "B")].set_index("feature")["value"]
    assert coef["view = AP"] > 0 > coef["view = PA"]
    assert "year missing" in coef.index  # missing values are features, with an indicator


def test_feature_ablation_alone_and_without(composed):
    ab = mb.feature_ablation(composed=composed)
    assert set(ab["setting"]) == {"all", "alone", "without"}
    a = ab[ab["composition"] == "A"].set_index(["group", "setting"])["auc"]
    assert a[("year", "alone")] > 0.8 and a[("year", "without")] < a[("all", "all")]


def test_one_class_training_rows_are_refused(composed):
    rows = composed["A"][composed["A"]["label"] == 1]
    with pytest.raises(ValueError, match="one class"):
        mb.fit_baseline(rows)


@pytest.mark.data
def test_baseline_table_on_the_real_compositions(data_root):
    table = mb.baseline_table(data_root, n_boot=50)
    assert list(table.columns) == mb.TABLE_COLUMNS and len(table) == 25
    assert table["auc"].between(0, 1).all()
    own = table[table["composition"] == table["test_set"]]
    assert (own["n_images"] > 0).all() and (own["n_patients"] <= own["n_images"]).all()
    assert own.set_index("test_set").loc["COVID-ChestXRay", "n_images"] == 15


def test_headline_baseline_leaves_out_the_label_proxies(composed):
    train = composed["A"][composed["A"]["split"] != "test"]
    headline = mb.fit_baseline(train, groups=mb.HEADLINE_GROUPS, missing_flags=False)
    names = list(headline.named_steps["prep"].get_feature_names_out())
    assert not any("year" in n or "missingindicator" in n for n in names)
    full = mb.fit_baseline(train)
    assert any("year" in n for n in full.named_steps["prep"].get_feature_names_out())
    a = mb.baseline_scores(composed=composed)  # the headline by default
    b = mb.baseline_scores(composed=composed, proxies=True)
    assert a["score"].tolist() != b["score"].tolist()
