"""The shortcut probes (source identification, mask-shape baseline, age from records) on synthetic arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from covid_lib.report import shortcuts as rs
from covid_lib.analysis import shortcuts as sc
from covid_lib.report.training import record_index
from covid_lib.runs import RunSpec


# ------------------------------------------------------------------------------------- features
def test_image_features_shape_and_histogram():
    imgs = np.stack([np.full((48, 48), v, np.uint8) for v in (0, 128, 255)])
    X = sc.image_features(imgs, side=8, bins=4)
    assert X.shape == (3, 64 + 4)
    np.testing.assert_allclose(X[:, 64:].sum(axis=1), 1.0)
    assert X[0, 64] == 1.0 and X[2, 67] == 1.0  # all pixels in the first / last bin
    np.testing.assert_allclose(X[1, :64], 128 / 255, atol=1e-6)
    with pytest.raises(ValueError, match="N, H, W"):
        sc.image_features(np.zeros((4, 4)))


def test_mask_features_left_right_and_box():
    m = np.zeros((1, 40, 40), bool)
    m[0, 10:30, 0:10] = True  # one "lung" on the image's left half only
    X = sc.mask_features(m, side=4)
    f = dict(zip(sc.MASK_SHAPE_FEATURES, X[0, 16:]))
    assert f["area"] == pytest.approx(200 / 1600)
    assert f["left_area"] == pytest.approx(f["area"]) and f["right_area"] == 0
    assert f["asymmetry"] == pytest.approx(1.0)
    assert (f["top"], f["bottom"], f["left"], f["right"]) == pytest.approx((0.25, 0.75, 0.0, 0.25))
    empty = sc.mask_features(np.zeros((1, 40, 40), bool), side=4)
    assert not empty.any()


# ----------------------------------------------------------------------------------- intervals
def test_multiclass_accuracy_values_and_cluster_interval():
    y = np.array(["a"] * 30 + ["b"] * 10)
    pred = np.array(["a"] * 30 + ["a"] * 5 + ["b"] * 5)
    groups = np.repeat(np.arange(20), 2)
    m = sc.multiclass_accuracy(y, pred, groups=groups, n_boot=300)
    assert m["accuracy"].value == pytest.approx(35 / 40)
    assert m["balanced_accuracy"].value == pytest.approx((1.0 + 0.5) / 2)
    for e in m.values():
        assert e.low <= e.value <= e.high and "cluster" in e.method
    with pytest.raises(ValueError):
        sc.multiclass_accuracy([0, 1], [0])


# --------------------------------------------------------------------------------------- probes
def _arrays(n_per=40, *, separable=True, seed=0):
    rng = np.random.default_rng(seed)
    sources = np.repeat(["cohen", "hannover", "kermany", "nih"], n_per)
    level = {"cohen": 60, "hannover": 110, "kermany": 160, "nih": 210}
    base = np.array([level[s] if separable else 128 for s in sources])
    imgs = np.clip(base[:, None, None] + rng.normal(0, 20, (len(sources), 24, 24)), 0, 255).astype(np.uint8)
    patients = np.arange(len(sources)) // 2
    rows = pd.DataFrame({"source": sources, "image_id": [f"i{i}" for i in range(len(sources))],
                         "group_id": [f"{s}:{p}" for s, p in zip(sources, patients)],
                         "split": np.where(patients % 3 == 0, "test", "train")})
    ok = {"raw": np.ones(len(rows), bool), "other": np.ones(len(rows), bool)}
    ok["other"][0] = False  # one image rejected at one step leaves every step
    return sc.ChainArrays(rows, {"raw": imgs, "other": imgs[:, ::-1]}, {}, ok, pd.DataFrame())


def test_source_probe_finds_separable_sources():
    res = sc.source_probe(_arrays(), n_boot=200, side=8, bins=8)
    assert list(res.table["step"]) == ["raw", "other"]
    assert (res.table["accuracy"] > 0.9).all()
    assert res.table["chance balanced accuracy"].iloc[0] == 0.25
    assert res.table["n train"].iloc[0] + res.table["n test"].iloc[0] == 159
    cm = res.confusion["raw"]
    assert list(cm.index) == list(cm.columns) == ["cohen", "hannover", "kermany", "nih"]
    assert cm.to_numpy().sum() == res.table["n test"].iloc[0]


def test_source_probe_near_chance_when_sources_look_alike():
    res = sc.source_probe(_arrays(separable=False, n_per=30), n_boot=200, side=8, bins=8)
    assert res.table["balanced_accuracy_low"].iloc[0] < 0.5


def test_fit_probe_binary_picks_a_c():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] > 0).astype(int)
    model = sc.fit_probe(X, y, np.arange(60) // 2, Cs=(0.01, 1.0))
    assert model.C_ in (0.01, 1.0) and model.score(X, y) > 0.8


def test_probe_rows_drops_hannover_copies_and_laterals():
    splits = pd.DataFrame({
        "source": ["cohen", "cohen", "cohen", "hannover", "kermany", "cohen"],
        "image_id": ["c1", "h1", "c2", "h1", "k1", "c3"],
        "frontal": [True, True, True, True, True, False],
        "location": ["x", "", "Hannover Medical School, Germany", "", "", ""],
        "split": "train", "group_id": list("abcdef")})
    rows = sc.probe_rows(splits, per_source=None)
    assert sorted(zip(rows["source"], rows["image_id"])) == [("cohen", "c1"), ("hannover", "h1"), ("kermany", "k1")]
    assert len(sc.probe_rows(pd.concat([splits] * 3), per_source=1)) == 3


def test_chain_arrays_without_model_reads_pngs_and_reports_rejections(tmp_path):
    rows = []
    for i, value in enumerate((None, None, 90)):
        img = (np.add.outer(np.arange(64), np.arange(64)) * 2).astype(np.uint8) if value is None \
            else np.full((64, 64), value, np.uint8)  # a uniform image fails the chain's check
        path = tmp_path / f"i{i}.png"
        Image.fromarray(img).save(path)
        rows.append({"source": "nih", "image_id": f"i{i}", "image_path": str(path), "patient_id": f"p{i}"})
    arr = sc.chain_arrays(pd.DataFrame(rows), {"raw": "none", "equalised": "equalize"}, image_size=32,
                          use_cache=False)
    assert arr.images["raw"].shape == (3, 32, 32)
    assert arr.ok["raw"].tolist() == [True, True, False] and arr.all_ok.tolist() == [True, True, False]
    assert set(arr.rejections["step"]) == {"raw", "equalised"} and set(arr.rejections["image_id"]) == {"i2"}
    assert arr.from_cache == {"raw": 0, "equalised": 0}
    assert arr.masks["raw"].all()


# ------------------------------------------------------------------------------------------ age
#: The one record of these tests: ResNet-18 from scratch on CORDA (cpu profile, seed 0).
AGE_SPEC = RunSpec("CORDA", arch="resnet18", profile="cpu", seed=0, data_version="v1")


def _age_records(write_record):
    k = pd.DataFrame({"test_set": "CORDA&ChestXRay", "source": "kermany", "image_id": [f"k{i}" for i in range(20)],
                      "patient_id": "x", "group_id": [f"kp{i // 2}" for i in range(20)], "label": 0})
    n = pd.DataFrame({"test_set": "CORDA&RSNA", "source": "nih", "image_id": [f"n{i}" for i in range(20)],
                      "patient_id": "x", "group_id": [f"np{i}" for i in range(20)], "label": 0})
    other = n.assign(test_set="CORDA", source="cohen", label=[i % 2 for i in range(20)])  # ignored: not a borrowed COVID- set
    rng = np.random.default_rng(0)
    # children always score higher, whatever the pneumonia status
    scores = pd.concat([k.assign(score=0.6 + rng.uniform(0, 0.3, 20)), n.assign(score=rng.uniform(0, 0.5, 20)),
                        other.assign(score=np.linspace(0.1, 0.9, 20))])
    write_record(AGE_SPEC, scores)
    manifest = pd.DataFrame({"source": ["kermany"] * 20 + ["nih"] * 20,
                             "image_id": [f"k{i}" for i in range(20)] + [f"n{i}" for i in range(20)],
                             "pneumonia": [i % 2 for i in range(40)], "age": [3] * 20 + [50] * 20})
    return record_index(write_record.results), manifest


def test_age_status_shows_missing_records(write_record):
    index, _ = _age_records(write_record)
    status = rs.age_status(index, ["CORDA", "CORDA&ChestXRay"], [None])
    assert status["state"].tolist() == ["done", "missing"]
    assert status["run_id"].tolist()[0] == AGE_SPEC.run_id and pd.isna(status["run_id"].iloc[1])


def test_age_table_separates_children_from_adults(write_record):
    index, manifest = _age_records(write_record)
    status = rs.age_status(index, ["CORDA", "CORDA&RSNA"], [None])
    scores = rs.age_scores(status, manifest)
    assert len(scores) == 40 and set(scores["age_group"]) == {"children (1-5)", "adults"}
    table = rs.age_table(scores, n_boot=200).set_index("comparison")
    assert len(table) == len(rs.AGE_COMPARISONS)
    for name in ("children with pneumonia vs adults with pneumonia", "all children vs all adults"):
        assert table.loc[name, "auc"] == 1.0 and table.loc[name, "auc_low"] == 1.0
    row = table.loc["children with pneumonia vs adults without COVID (all NIH)"]
    assert (row["n children"], row["n adults"]) == (10, 20)
    assert (table["learned"] == "yes").all()


def test_age_scores_empty_when_nothing_is_recorded():
    status = rs.age_status(pd.DataFrame(columns=["task"]), ["CORDA"], ["kermany"])
    assert rs.age_scores(status, pd.DataFrame(columns=["source", "image_id", "pneumonia", "age"])).empty


def test_group_auc_undefined_without_one_side():
    s = pd.DataFrame({"score": [0.1, 0.2], "group_id": ["a", "b"]})
    g = rs.group_auc(s, pd.Series([True, True]), pd.Series([False, False]), n_boot=10)
    assert np.isnan(g["auc"]) and g["n adults"] == 0


def test_age_scores_plot_shows_each_group_of_the_record(write_record):
    from matplotlib.collections import PathCollection

    index, manifest = _age_records(write_record)
    scores = rs.age_scores(rs.age_status(index, ["CORDA"], [None]), manifest)
    fig = rs.plot_age_scores(scores)
    (ax,) = [a for a in fig.axes if a.get_visible()]  # one record, one panel
    assert ax.get_title() == "resnet18 on CORDA\npretrain none"
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "children\nnormal", "children\npneumonia", "adults\nno finding", "adults\npneumonia"]
    points = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(p) for p in points] == [10, 10, 10, 10]
    for x, p in enumerate(points):  # jittered around their group's position
        assert (np.abs(p[:, 0] - x) <= 0.2).all()
    plotted = sorted(np.concatenate([p[:, 1] for p in points]))
    assert plotted == pytest.approx(sorted(scores["score"]))
    assert min(points[0][:, 1].min(), points[1][:, 1].min()) > max(points[2][:, 1].max(), points[3][:, 1].max())


def test_confusion_plot_writes_the_counts_of_each_step():
    res = sc.source_probe(_arrays(n_per=12), n_boot=20, side=8, bins=8)
    fig = rs.plot_confusions(res.confusion)
    assert [ax.get_title() for ax in fig.axes] == ["raw", "other"]
    for ax, cm in zip(fig.axes, res.confusion.values()):
        assert [int(t.get_text()) for t in ax.texts] == cm.to_numpy().ravel().tolist()
        assert [t.get_text() for t in ax.get_yticklabels()] == list(cm.index) == ["cohen", "hannover", "kermany", "nih"]
        share = np.asarray(ax.images[0].get_array())
        assert share.sum(axis=1).tolist() == pytest.approx([1.0] * 4)  # every true source's row sums to 1
    assert fig.axes[0].get_ylabel() == "true source"


def test_mean_images_plot_one_panel_per_source_and_step():
    arr = _arrays(n_per=6)
    fig = rs.plot_mean_images(arr.images, arr.rows["source"].to_numpy(), side=8)
    assert len(fig.axes) == 4 * 2
    grid = np.array(fig.axes).reshape(4, 2)
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["cohen", "hannover", "kermany", "nih"]
    assert [ax.get_title() for ax in grid[0]] == ["raw", "other"]
    means = [float(ax.images[0].get_array().mean()) for ax in grid[:, 0]]
    assert means == sorted(means) and means[0] == pytest.approx(60 / 255, abs=0.03)  # the sources' grey levels
    assert means[-1] == pytest.approx(210 / 255, abs=0.03)


def test_interval_plot_draws_each_row_at_its_value_and_the_chance_line():
    table = pd.DataFrame({"step": ["raw", "other"], "accuracy": [0.9, 0.4],
                          "accuracy_low": [0.8, 0.3], "accuracy_high": [0.95, 0.5]})
    fig = rs.plot_intervals(table, "step", value="accuracy", chance=0.25)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["raw", "other"]
    points = ax.lines[0]
    assert points.get_xdata().tolist() == [0.9, 0.4] and points.get_ydata().tolist() == [0, 1]
    (bars,) = [c for c in ax.collections if len(c.get_segments()) == 2]
    assert [s[:, 0].tolist() for s in bars.get_segments()] == [[0.8, 0.95], [0.3, 0.5]]
    assert list(ax.lines[-1].get_xdata()) == [0.25, 0.25]  # the chance line, drawn last
    assert ax.get_xlabel() == "accuracy (95% CI over patients)"
