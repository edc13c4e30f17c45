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


def test_table_takes_auc_and_interval_from_auc_estimate_and_handles_one_class():
    """Each cell is :func:`covid_lib.metrics.auc_estimate` of its scores (the book's one AUC rule):
    DeLong where each test patient has one image, the patient bootstrap where one has several; a
    test set with one class gives NaN, no error."""
    from covid_lib.metrics import auc_estimate

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = np.clip(0.3 * y + rng.uniform(0, 0.7, 60), 0, 1)
    one_each = [f"p{i}" for i in range(60)]
    clustered = [f"p{i // 3}" for i in range(60)]
    parts = [pd.DataFrame({"composition": "A", "test_set": name, "model": "logistic", "source": "x",
                           "image_id": range(60), "patient_id": groups, "group_id": groups, "label": labels,
                           "score": s})
             for name, groups, labels in (("one each", one_each, y), ("clustered", clustered, y),
                                          ("one class", one_each, np.ones(60, int)))]
    table = mb.table_from_scores(pd.concat(parts, ignore_index=True), n_boot=300, seed=2).set_index("test_set")
    for name, groups in (("one each", one_each), ("clustered", clustered)):
        est = auc_estimate(y, s, groups=groups, n_boot=300, seed=2)
        row = table.loc[name]
        assert (row["auc"], row["auc_low"], row["auc_high"], row["interval"]) == (est.value, est.low, est.high,
                                                                                  est.method)
        assert row["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert table.loc["one each", "interval"] == "DeLong, logit"
    assert table.loc["clustered", "interval"] == "cluster bootstrap (n_boot=300, 20 groups)"
    assert table.loc["one class", ["auc", "auc_low", "auc_high"]].isna().all()


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
    # its 15 patients have one image each: DeLong's interval (auc_estimate's rule), not the bootstrap
    assert own.set_index("test_set").loc["COVID-ChestXRay", "interval"] == "DeLong, logit"


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
