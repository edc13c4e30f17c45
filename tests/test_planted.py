"""The planted confounder: marks on synthetic arrays, the residue and probe per chain step, the
planted run's datasets and record (run ids unchanged, only COVID+ train/val marked, three test variants)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from covid_lib.analysis import planted as pl
from covid_lib.preprocess import finish_chain, get_pipeline
from covid_lib.preprocess.plant import (MARKS, Mark, apply_mark, get_mark, mark_region, preprocess_marked,
                                        region_after_chain)
from covid_lib.runs import LEARNED, RunSpec
from covid_lib.runs.planted import VARIANTS, first_below, planted_datasets, variant_flags, variant_set


def _xray(h: int = 120, w: int = 100, seed: int = 0) -> np.ndarray:
    """A fake radiograph: noise, two darker "lungs" in the middle, never 255."""
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 200, (h, w)).astype(np.uint8)
    img[h // 4: 3 * h // 4, w // 6: w // 2 - 4] //= 2
    img[h // 4: 3 * h // 4, w // 2 + 4: 5 * w // 6] //= 2
    return img


# ------------------------------------------------------------------------------------------ marks
@pytest.mark.parametrize("shape", [(120, 100), (300, 400), (64, 64)])
def test_corner_mark_sits_in_the_top_left_corner_sized_by_the_image(shape):
    img = _xray(*shape)
    m = MARKS["corner"]
    marked, region = apply_mark(img, "corner"), mark_region(shape, "corner")
    short = min(shape)
    rows, cols = np.nonzero(region)
    side = round(m.size * short)
    assert rows.min() == cols.min() == round(m.margin * short)  # the margin, relative to the image
    assert rows.max() - rows.min() + 1 == cols.max() - cols.min() + 1 == side
    assert rows.max() < shape[0] / 4 and cols.max() < shape[1] / 4  # a corner, away from the lungs
    assert (marked[region] == 255).all() and np.array_equal(marked[~region], img[~region])
    # an "L": its upright and foot are set, the inside of the L is not
    top, left = rows.min(), cols.min()
    assert region[top, left] and region[top + side - 1, left + side - 1] and not region[top, left + side - 1]


def test_marks_are_deterministic_and_leave_the_input_alone():
    img = _xray()
    before = img.copy()
    for name in MARKS:
        assert np.array_equal(apply_mark(img, name), apply_mark(img, name))
    assert np.array_equal(img, before)


def test_gamma_is_monotone_brightening_and_whole_image():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = apply_mark(levels, "gamma").ravel().astype(int)
    assert (np.diff(out) >= 0).all() and out[0] == 0 and out[-1] == 255  # monotone, ends fixed
    assert (out[1:-1] >= np.arange(1, 255)).all() and (out[1:-1] > np.arange(1, 255)).sum() > 200  # gamma < 1
    assert mark_region((16, 16), "gamma").all()
    dark = apply_mark(levels, Mark("dark", "gamma", gamma=2.0)).ravel().astype(int)
    assert (dark[1:-1] <= np.arange(1, 255)).all()


def test_mark_errors():
    with pytest.raises(ValueError, match="unknown mark 'stripe'"):
        get_mark("stripe")
    with pytest.raises(ValueError, match="2-D uint8"):
        apply_mark(np.zeros((10, 10), np.float32), "corner")
    with pytest.raises(ValueError, match="kind"):
        Mark("x", "text")


def test_region_follows_the_chain_geometry():
    img = _xray(200, 100)  # portrait: padded left and right to 200 x 200, then resized
    p = get_pipeline("none", image_size=100)
    region = region_after_chain(mark_region(img.shape, "corner"), p)
    out = finish_chain(apply_mark(img, "corner"), p).image
    assert region.any() and out[region].mean() > 0.85  # the mark's pixels stay bright where the region says
    assert out[region].min() > out[~region & (out > 0)].mean()
    rows, cols = np.nonzero(region)
    assert cols.min() >= 25 - 1  # the left padding (50 px of 200, so 25 of 100) comes first
    assert not region_after_chain(mark_region(img.shape, "corner"), p, "50,150,30,90").any()  # a crop cuts it away


# ------------------------------------------------------------------------------------ chain steps
def _fake_rows(n: int = 12) -> tuple[pd.DataFrame, dict]:
    images = {f"img{i}": _xray(140 + 4 * i, 120, seed=i) for i in range(n)}
    rows = pd.DataFrame({"image_id": list(images), "source": "fake", "image_path": list(images),
                         "group_id": [f"p{i // 2}" for i in range(n)], "label": [i % 2 for i in range(n)]})
    return rows, images


def test_preprocess_marked_marks_only_flagged_rows_and_matches_the_chain():
    rows, images = _fake_rows(4)
    p = get_pipeline("equalize", image_size=64)
    flags = np.array([True, False, True, False])
    out = preprocess_marked(rows, p, "corner", flags, read=images.__getitem__)
    assert out.ok.all() and out.regions[flags].any() and not out.regions[~flags].any()
    for i, image_id in enumerate(rows["image_id"]):
        raw = apply_mark(images[image_id], "corner") if flags[i] else images[image_id]
        expected = np.round(finish_chain(raw, p).image * 255).astype(np.uint8)
        assert np.array_equal(out.images[i], expected)


def test_equalisation_removes_gamma_but_not_the_corner_mark():
    rows, images = _fake_rows()
    steps = {"raw": "none", "equalised": "equalize"}
    kw = dict(image_size=64, read=images.__getitem__)
    gamma = pl.residue_table(pl.planted_arrays(rows, "gamma", steps, **kw), n_boot=100).set_index("step")
    corner = pl.residue_table(pl.planted_arrays(rows, "corner", steps, **kw), n_boot=100).set_index("step")
    assert gamma.loc["raw", "residue"] > 0.05 and gamma.loc["equalised", "residue"] < 0.01  # ranks kept
    assert (corner["residue_in_mark"] > 0.1).all()  # the glyph survives both steps where it was planted
    # ... and min-max scaling carries it everywhere when the image had no white pixel of its own:
    assert corner.loc["raw", "residue_outside"] > 0.1

    def white(path: str) -> np.ndarray:
        img = images[path].copy()
        img[-16:, -16:] = 255  # a white block that survives the resize
        return img

    kw["read"] = white
    whitened = pl.residue_table(pl.planted_arrays(rows, "corner", steps, **kw), n_boot=100).set_index("step")
    assert whitened.loc["raw", "residue_outside"] < 0.002 < 0.1 < whitened.loc["raw", "residue_in_mark"]
    for t in (gamma, corner):
        assert (t["residue_low"] <= t["residue"]).all() and (t["residue"] <= t["residue_high"]).all()


def test_probe_reads_a_corner_mark_and_not_an_absent_one():
    rows, images = _fake_rows(16)
    arrays = pl.planted_arrays(rows, "corner", {"raw": "none"}, image_size=64, read=images.__getitem__)
    probe = pl.mark_probe(arrays, n_boot=100, Cs=(1.0,)).iloc[0]
    assert probe["accuracy"] > 0.9 and probe["accuracy_low"] > 0.5 and probe["chance"] == 0.5
    same = pl.PlantedArrays(arrays.rows, "none", arrays.unmarked, arrays.unmarked)  # "marked" = unmarked
    assert pl.mark_probe(same, n_boot=100, Cs=(1.0,)).iloc[0]["accuracy"] <= 0.6


# ------------------------------------------------------------------------------------- planted run
def _spec(**kw) -> RunSpec:
    return RunSpec(**{"composition": "CORDA", "arch": "resnet18", "pretrain": "kermany", "profile": "smoke",
                      "data_version": "v1", **kw})


def test_plant_is_hashed_only_when_set():
    assert "plant" not in _spec().identity()["spec"]
    assert _spec().run_id == "covid-CORDA-resnet18-kermany-smoke-s0-b7a13b2762"  # main's id before the field
    assert _spec(pretrain=None, pipeline="none").run_id == RunSpec(
        "CORDA", profile="smoke", pipeline="none", data_version="v1", plant=None).run_id
    assert _spec(plant="corner").run_id != _spec().run_id != _spec(plant="gamma").run_id
    with pytest.raises(ValueError, match="plant must be None or one of corner, gamma"):
        _spec(plant="stripe")
    with pytest.raises(ValueError, match="covid task only"):
        RunSpec("kermany", task="pretrain", profile="smoke", plant="corner")


def test_planted_runs_are_dispatched_by_compute():
    from covid_lib.runs.execution import RUN_KINDS
    from covid_lib.runs.planted import planted_finetune

    claimed = [kind for claims, kind in RUN_KINDS if claims(_spec(plant="corner"))]
    assert claimed == [planted_finetune]
    assert not [kind for claims, kind in RUN_KINDS if claims(_spec())]


def test_planted_grid():
    from covid_lib import grid

    specs = grid.grid_specs("planted", "smoke", data_version="x")
    assert sorted((s.plant, s.pipeline) for s in specs) == [(m, p) for m in ("corner", "gamma") for p in ("none", "paper")]
    assert {(s.composition, s.arch, s.pretrain, s.seed) for s in specs} == {("CORDA", "resnet18", None, 0)}
    others = {s.run_id for g in ("table2", "ablation") for s in grid.grid_specs(g, "smoke", data_version="x")}
    assert not others & {s.run_id for s in specs}


def test_variants_and_epochs_to_learn():
    y = np.array([1, 0, 1, 0])
    assert variant_flags(y, "unmarked").tolist() == [False] * 4
    assert variant_flags(y, "marked").tolist() == [True, False, True, False]
    assert variant_flags(y, "flipped").tolist() == [False, True, False, True]
    assert variant_set("CORDA", "flipped") == "CORDA · flipped" and list(VARIANTS) == ["unmarked", "marked", "flipped"]
    assert first_below([0.7, np.nan, 0.45, 0.6, 0.2]) == 3 and first_below([0.7, 0.45, 0.6, 0.2], sustained=True) == 4
    assert first_below([0.7, 0.8]) is None and first_below([0.4, 0.6], sustained=True) is None
    assert first_below([0.1, 0.2], sustained=True) == 1


def test_only_covid_positive_training_and_validation_images_are_marked():
    """Fake chain outputs: 0 for an unmarked copy, 255 for a marked one; the datasets must pick them by class."""
    from covid_lib.preprocess.plant import MarkedImages

    spec = _spec(pretrain=None, plant="corner").resolved()
    s = spec.resize_size
    rows = pd.DataFrame({"split": ["train"] * 4 + ["val"] * 4 + ["test"] * 4, "label": [1, 0, 0, 1] * 3,
                         "group_id": [f"g{i}" for i in range(12)]})
    versions = {}
    for split in ("train", "val", "test"):
        n = (rows["split"] == split).sum()
        versions[split] = {flag: MarkedImages(np.full((n, s, s), 255 * flag, np.uint8), np.ones(n, bool),
                                              np.full(n, flag), np.zeros((n, s, s), bool), pd.DataFrame(), 0.0)
                           for flag in (False, True)}
    sets = planted_datasets(spec, rows, versions)
    assert set(sets) == {"train", "val", "val · unmarked", "val · flipped",
                         "test · unmarked", "test · marked", "test · flipped"}

    def marked(name: str) -> list[bool]:
        return [bool(im.max() == 255) for im in sets[name].images]

    y = [1, 0, 0, 1]
    assert marked("train") == marked("val") == marked("test · marked") == [bool(v) for v in y]
    assert marked("val · flipped") == marked("test · flipped") == [not v for v in y]
    assert marked("val · unmarked") == marked("test · unmarked") == [False] * 4
    assert sets["train"].augment and not sets["val"].augment and not sets["test · flipped"].augment
    assert sets["test · flipped"].mean == sets["train"].mean  # normalised by the training images


def test_fit_watches_extra_sets_without_changing_the_run():
    import torch

    from covid_lib.models import create_model
    from covid_lib.train import TrainConfig, XrayDataset, fit

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (12, 36, 36), dtype=np.uint8)
    y = np.array([0, 1] * 6)
    imgs[y == 1, :8, :8] = 255
    train = XrayDataset(imgs, y, [str(i) for i in range(12)], input_size=32, augment=True)
    val = XrayDataset(imgs, y, [str(i) for i in range(12)], input_size=32, mean=train.mean, std=train.std)
    cfg = TrainConfig(epochs=2, batch_size=4, device="cpu", precision="fp32", threads=1, progress=False)
    runs = []
    for watch in (None, {"again": val}):
        torch.manual_seed(0)
        runs.append(fit(create_model("conv8", width=4), train, val, cfg, watch=watch))
    plain, watched = runs
    assert "again_auc" in watched.history and np.allclose(watched.history["again_auc"], watched.history["val_auc"])
    assert np.allclose(plain.history["val_auc"], watched.history["val_auc"])


@pytest.mark.data
@pytest.mark.slow
def test_smoke_planted_run_end_to_end(data_root, tmp_path, monkeypatch):
    """A planted smoke run (pipeline none) into a tmp results dir: the record scores three variants."""
    from covid_lib.report import planted as rp
    from covid_lib.runs import RESULTS_ENV_VAR, run

    monkeypatch.setenv(RESULTS_ENV_VAR, str(tmp_path / "results"))
    spec = RunSpec("CORDA", profile="smoke", pipeline="none", plant="corner")
    result = run(spec, data_root=data_root, device="cpu", progress=False, storage=tmp_path / "ckpt")
    metrics = json.loads((result.path / "metrics.json").read_text())
    names = [variant_set("CORDA", v) for v in VARIANTS]
    assert set(metrics["test_sets"]) == set(names) and set(result.scores["test_set"]) == set(names)
    per_variant = result.scores.groupby("test_set")["image_id"].apply(list)
    assert per_variant[names[0]] == per_variant[names[1]] == per_variant[names[2]]  # the same images
    assert {"val_unmarked_auc", "val_flipped_auc"} <= set(result.history.columns)
    plant = metrics["plant"]
    assert plant["mark"] == "corner" and plant["preprocess_s"] > 0 and plant["epochs_run"] == len(result.history)
    assert plant["epochs_to_learn"] == first_below(result.history["val_flipped_auc"])
    records = rp.planted_records([spec.resolved(data_root)], tmp_path / "results")
    assert records["status"].iloc[0] in LEARNED and records["mark"].iloc[0] == "corner"
    table = rp.run_table(records)
    assert len(table) == 1 and {"AUC unmarked", "AUC marked", "AUC flipped"} <= set(table.columns)
    long = rp.run_long(records)
    assert list(long["variant"]) == list(VARIANTS) and long["auc"].notna().all()
    assert "corner mark" in rp.verdict(long, "corner", "none")
    assert len(rp.epoch_curves(records)) == len(result.history)


def test_mark_effect_pairs_marked_and_flipped_and_the_verdict_reads_the_paired_interval(tmp_path):
    import json

    import pandas as pd

    from covid_lib.report import planted as rp

    rng = np.random.default_rng(0)
    n = 80
    label = np.arange(n) % 2
    base = pd.DataFrame({"source": "cohen", "image_id": [f"i{k}" for k in range(n)],
                         "patient_id": [f"p{k // 2}" for k in range(n)], "group_id": [f"p{k // 2}" for k in range(n)],
                         "label": label})
    disease = label * 0.5 + rng.normal(0, 0.5, n)
    frames = [base.assign(test_set="CORDA · unmarked", score=disease),
              base.assign(test_set="CORDA · marked", score=disease + 0.8 * label),  # the mark lifts COVID+
              base.assign(test_set="CORDA · flipped", score=disease + 0.8 * (1 - label))]
    (tmp_path / "run").mkdir()
    pd.concat(frames).to_csv(tmp_path / "run" / "scores.csv", index=False)
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"plant": {"mark": "corner"}}))
    records = pd.DataFrame([{"mark": "corner", "pipeline": "paper", "status": "done", "path": str(tmp_path / "run"),
                             "run_id": "x"}])
    effect = rp.mark_effect(records, n_boot=200)
    row = effect.iloc[0]
    assert row["n"] == n and row["low"] > 0 and row["diff"] > 0.2
    long = pd.DataFrame([{"mark": "corner", "pipeline": "paper", "status": "done", "variant": v, "auc": a,
                          "auc_low": a - 0.15, "auc_high": a + 0.15} for v, a in
                         (("unmarked", 0.7), ("marked", 0.85), ("flipped", 0.6))])
    assert "no sign" in rp.verdict(long) or "overlap" in rp.verdict(long)  # unpaired: undecided
    text = rp.verdict(long, effect=effect)
    assert "paired interval lies above 0" in text and "uses the mark" in text and "residue" in text
    # scores that all lie below 0.5 are a collapsed model: labelled, and deciding nothing (F3's rule)
    assert rp.planted_status(records.iloc[0].to_dict()) == "done"
    for f in frames:
        f["score"] = 0.4 + 0.01 * f["score"] / (1 + np.abs(f["score"]))
    pd.concat(frames).to_csv(tmp_path / "run" / "scores.csv", index=False)
    assert rp.planted_status(records.iloc[0].to_dict()) == "collapsed"
    assert rp.planted_status({**records.iloc[0].to_dict(), "status": "did not learn"}) == "did not learn"
    text = rp.verdict(long.assign(status="collapsed"), effect=effect)
    assert "collapsed" in text and "decides nothing" in text and "residue" not in text


def test_plot_marks_labels_steps_and_rows():
    from types import SimpleNamespace

    from covid_lib.report import planted as rpl

    img = lambda v: SimpleNamespace(images=np.full((1, 4, 4), v, dtype=np.uint8))  # noqa: E731
    arr = SimpleNamespace(unmarked={"raw": img(10), "chain": img(20)}, marked={"raw": img(200), "chain": img(30)})
    fig = rpl.plot_marks({"box": arr}, diff_gain=4)
    grid = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_title() for ax in grid[0]] == ["raw", "chain"]
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["unmarked", "box", "|box − unmarked| ×4"]
    assert grid[2, 0].images[0].get_array().max() == pytest.approx(min(1.0, 4 * 190 / 255))
    import matplotlib.pyplot as plt

    plt.close(fig)
