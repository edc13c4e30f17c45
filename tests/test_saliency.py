"""Saliency maps and the in-lung share (covid_lib.analysis.saliency, covid_lib.report.saliency): synthetic
maps and masks, CAM against the grad-cam package on random-weight models, the geometry of mask
and input, the bootstrap; one smoke run on real data through the whole path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from covid_lib.report import saliency as rsal
from covid_lib.analysis import saliency as sal
from covid_lib.models import create_model
from covid_lib.train import XrayDataset


# ------------------------------------------------------------------------------------- the share
def test_in_lung_share_of_constructed_maps():
    masks = np.zeros((4, 8, 8), bool)
    masks[:, 2:6, 1:4] = True  # 12 of 64 pixels
    maps = np.zeros((4, 8, 8))
    maps[0][masks[0]] = 3.0  # all mass inside
    maps[1] = 1.0  # uniform
    maps[2][~masks[2]] = 0.5  # all mass outside
    share = sal.in_lung_share(maps, masks)
    assert share[0] == 1.0 and share[2] == 0.0 and np.isnan(share[3])  # an empty map has no share
    assert share[1] == pytest.approx(12 / 64) == sal.lung_area_share(masks)[1]
    with pytest.raises(ValueError, match="non-negative"):
        sal.in_lung_share(-maps, masks)
    with pytest.raises(ValueError, match="shape"):
        sal.in_lung_share(maps[:, :4], masks)


def test_share_summary_interval_contains_the_estimate_and_excess_is_paired():
    rng = np.random.default_rng(0)
    baseline = rng.uniform(0.3, 0.4, 60)
    share = baseline + 0.2 + rng.normal(0, 0.05, 60)
    groups = np.repeat(np.arange(20), 3).astype(str)
    s = sal.share_summary(share, baseline, groups, n_boot=500)
    for k in ("share", "baseline", "excess"):
        assert s[f"{k}_low"] <= s[k] <= s[f"{k}_high"]
    assert s["excess"] == pytest.approx(s["share"] - s["baseline"]) and s["excess_low"] > 0.15
    assert s["n"] == 60 and s["n_patients"] == 20 and "20 patient groups" in s["interval"]
    share[:5] = np.nan
    assert sal.share_summary(share, baseline, groups, n_boot=100)["n_excluded"] == 5
    clustered = sal.share_summary(np.repeat(rng.uniform(0, 1, 20), 3), baseline, groups, n_boot=500)
    naive = sal.share_summary(np.repeat(rng.uniform(0, 1, 20), 3), baseline, np.arange(60).astype(str), n_boot=500)
    assert clustered["share_high"] - clustered["share_low"] > naive["share_high"] - naive["share_low"]


def test_excess_difference_sign_and_interval():
    rng = np.random.default_rng(1)
    t = lambda e, g: pd.DataFrame({"share": 0.4 + e + rng.normal(0, .02, 30), "baseline": 0.4,  # noqa: E731
                                   "group_id": [f"{g}{i // 2}" for i in range(30)]})
    d = sal.excess_difference(t(0.3, "a"), t(0.0, "b"), n_boot=300)
    assert d["diff_low"] <= d["diff"] <= d["diff_high"] and d["diff_low"] > 0.2
    assert np.isnan(sal.excess_difference(t(0, "a").iloc[:0], t(0, "b"), n_boot=10)["diff"])


# ---------------------------------------------------------------------------------------- maps
@pytest.mark.parametrize("arch", ["resnet18", "conv8"])
def test_cam_equals_gradcam_and_hirescam_up_to_scale(arch):
    torch.manual_seed(0)
    model = create_model(arch, num_classes=2).eval()
    x = torch.randn(3, 1, 64, 64)
    cam = sal.class_activation_maps(model, x, relu=False)
    grad = sal.package_maps(model, x, "gradcam", relu=False)
    hires = sal.package_maps(model, x, "hirescam", relu=False)
    h, w = cam.shape[1:]
    # global average pool + linear head: Grad-CAM's channel weights are the fc weights / (h w)
    np.testing.assert_allclose(grad * h * w, cam, rtol=1e-4, atol=1e-5 * np.abs(cam).max())
    np.testing.assert_allclose(hires * h * w, cam, rtol=1e-4, atol=1e-5 * np.abs(cam).max())
    assert np.abs(cam).max() > 0
    logit = sal.class_activation_maps(model, x, relu=False, contrast=False)
    np.testing.assert_allclose(sal.package_maps(model, x, "gradcam", relu=False, contrast=False) * h * w, logit,
                               rtol=1e-4, atol=1e-5 * np.abs(logit).max())
    other = sal.class_activation_maps(model, x, class_index=0, relu=False)  # the other class differs
    assert not np.allclose(other, cam, rtol=1e-2)
    maps = {m: sal.saliency_maps(model, x, m) for m in sal.METHODS}
    for m in maps.values():
        assert m.shape == (3, 64, 64) and (m >= 0).all()
    masks = np.zeros((3, 64, 64), bool)
    masks[:, 10:40, 5:30] = True
    np.testing.assert_allclose(sal.in_lung_share(maps["cam"], masks), sal.in_lung_share(maps["gradcam"], masks),
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="unknown saliency method"):
        sal.saliency_maps(model, x, "eigen")


def test_upsample_keeps_position_and_sign():
    m = np.zeros((1, 4, 4), np.float32)
    m[0, 0, 3] = 1.0  # top-right cell
    up = sal.upsample(m, 16)
    assert up.shape == (1, 16, 16) and (up >= 0).all()
    assert np.unravel_index(up[0].argmax(), (16, 16)) in {(0, 15), (1, 14), (0, 14), (1, 15)}
    assert up[0, :4, 12:].sum() > 0.5 * up[0].sum()


# ------------------------------------------------------------------------------------- geometry
def test_mask_geometry_matches_the_datasets_centre_crop():
    side, size = 72, 64
    masks = np.zeros((2, side, side), bool)
    masks[0, 0:10, 60:72] = True  # off-centre: the crop must shift it by (side - size) // 2
    masks[1, 30:50, 20:40] = True
    crops = sal.input_masks(masks, size)
    data = XrayDataset(masks.astype(np.uint8) * 255, [0, 1], ["a", "b"], input_size=size)
    np.testing.assert_array_equal(crops, data.images > 0)
    off = (side - size) // 2
    np.testing.assert_array_equal(crops[1], masks[1, off:off + size, off:off + size])
    assert crops[0].sum() == masks[0, off:off + size, off:off + size].sum() < masks[0].sum()
    with pytest.raises(ValueError):
        sal.input_masks(masks, side + 1)


# ------------------------------------------------------------------------------------ reporting
def _per_image(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for pipeline, lift in (("paper", 0.3), ("none", 0.0)):
        for source, seen in (("cohen", "trained on"), ("nih", "unseen")):
            n = 20
            base = rng.uniform(0.3, 0.4, n)
            parts.append(pd.DataFrame({
                "arch": "resnet18", "pretrain": "none", "pipeline": pipeline, "composition": "CORDA", "seed": 0,
                "run_id": f"run-{pipeline}", "status": "done", "did_not_learn": pipeline == "none",
                "seen": seen, "source": source, "image_id": [f"{source}{i}" for i in range(n)],
                "group_id": [f"{source}{i // 2}" for i in range(n)], "label": rng.integers(0, 2, n),
                "score": rng.uniform(0, 1, n), "share": base + lift + rng.normal(0, .02, n), "baseline": base,
                "has_mask": True, "map_status": "measured", "layer": "layer2", "cells": 16}))
    out = pd.concat(parts, ignore_index=True)
    # three maps of one model and group place nothing, one image has no mask: counted, not scored
    lost = out.index[(out["run_id"] == "run-paper") & (out["seen"] == "unseen")][:4]
    out.loc[lost, "map_status"] = ["no positive mass", "no positive mass", "constant", "no mask"]
    out.loc[lost, "share"] = np.nan
    out.loc[lost[3], ["has_mask", "baseline"]] = [False, np.nan]
    return out


def test_summary_effect_and_figures():
    per_image = _per_image()
    t = rsal.summary_table(per_image, n_boot=200)
    assert len(t) == 4 and set(t["group"]) == {"trained on", "unseen"}
    assert ((t["share_low"] <= t["share"]) & (t["share"] <= t["share_high"])).all()
    lossy = t[(t["run_id"] == "run-paper") & (t["group"] == "unseen")].iloc[0]
    assert (lossy["n_images"], lossy["n"], lossy["n_no_mask"], lossy["n_no_positive_mass"], lossy["n_constant"],
            lossy["n_not_measurable"]) == (20, 16, 1, 2, 1, 3)
    assert (t["n"] + t["n_not_measurable"] + t["n_no_mask"] == t["n_images"]).all() and (t["cells"] == 16).all()
    f = rsal.format_summary(t)
    assert rsal.not_measurable_text(lossy) == "3 of 19 (no positive mass 2, constant 1)"
    assert "3 of 19 (no positive mass 2, constant 1)" in f["not measurable"].tolist()
    assert (f["map cells"] == "16x16").all()
    assert (f.loc[t["did_not_learn"].to_numpy(), "learned"] == "NO").all()
    assert f["excess [95% CI]"].str.contains(r"\[").all()
    assert len(rsal.summary_table(per_image, by="source", n_boot=50)) == 4
    eff = rsal.preprocessing_effect(per_image, n_boot=200)
    assert len(eff) == 2 and (eff["diff_high"] < -0.2).all() and eff["did not learn"].all()
    assert (eff["n common"] == 20).all()
    su = rsal.seen_unseen_difference(per_image, n_boot=100)
    assert len(su) == 2 and su["diff"].abs().max() < 0.1
    fig = rsal.plot_shares(t)
    assert len(fig.axes) == 1
    img = np.zeros((16, 16), np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    fig = rsal.gallery([(img, np.ones((16, 16)), mask, "x")] * 3, ncols=2)
    assert len(fig.axes) == 8 and rsal.gallery([]) is None  # 2 rows x 2 (image, overlay) pairs
    assert rsal.seen_status("kermany", trained={"cohen"}, pretrained={"kermany"}) == "pre-trained on"


# ------------------------------------------------------------------------------- the whole path
@pytest.mark.data
@pytest.mark.slow
def test_saliency_of_a_smoke_run(data_root, tmp_path, monkeypatch):
    from covid_lib import runs
    from covid_lib.report.records import spec_records

    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    spec = runs.RunSpec("CORDA", profile="smoke").resolved(data_root)
    runs.run(spec, data_root=data_root, device="cpu", progress=False)
    rows = rsal.saliency_rows(data_root, n_images=4)
    assert set(rows["source"]) == {"cohen", "kermany", "nih", "hannover"}
    res = sal.model_saliency(spec, rows, data_root=data_root)
    t = res.table
    assert len(t) > 0 and res.maps.shape == res.masks.shape == res.images.shape == (len(t), 64, 64)
    assert (res.layer, res.cells) == ("layer1", 16)  # 64 px smoke input: the deepest 16x16 map
    measured = t["map_status"] == "measured"
    assert t["has_mask"].all() and t.loc[measured, "share"].between(0, 1).all() and t["baseline"].between(0.02, 0.98).all()
    assert t.loc[~measured, "share"].isna().all() and set(t["map_status"]) <= set(sal.MAP_STATES)
    # geometry: the paper chain blanks the image outside its mask (blurred, sigma 3 px), so in the
    # model's input nothing bright lies farther than ~3 sigma from the mask we measure with; a
    # mask resized instead of centre-cropped, or not cropped, would leave lung pixels out there
    from scipy.ndimage import binary_dilation

    far = ~np.stack([binary_dilation(m, iterations=10) for m in res.masks])
    assert res.images[far].max() <= 16 and res.images[res.masks].mean() > 40
    other = runs.RunSpec("CORDA", profile="smoke", seed=5).resolved(data_root)  # never trained
    records = spec_records([spec, other])
    per_image, results, status = rsal.collect(records, [spec, other], rows, data_root=data_root)
    assert status.set_index("run_id").loc[other.run_id, "state"] == "not yet recorded"
    assert status.set_index("run_id").loc[other.run_id, "checkpoint"] == "not cached here"
    assert set(per_image["seen"]) == {"trained on", "unseen"} and list(results) == [spec.run_id]
    assert set(per_image.loc[per_image["seen"] == "trained on", "source"]) == {"cohen"}
    table = rsal.summary_table(per_image, n_boot=100)
    assert len(table) == 2 and rsal.format_summary(table)["test group"].tolist() == ["trained on", "unseen"]
    assert (table["n"] + table["n_not_measurable"] + table["n_no_mask"] == table["n_images"]).all()
    high, low = rsal.extremes(per_image[per_image["map_status"] == "measured"], spec.run_id, k=2)
    assert high["share"].min() >= low["share"].max()
    assert rsal.gallery(rsal.gallery_items(per_image, results, pd.concat([high, low]))) is not None


def test_excess_statements_are_worded_from_the_numbers():
    base = dict(arch="resnet18", pretrain=None, pipeline="none", composition="CORDA", did_not_learn=False,
                group="trained on", baseline=0.3, cells=16, n_images=40, n_no_mask=0, n_patients=20)
    nan = float("nan")
    table = pd.DataFrame([
        {**base, "n": 40, "n_not_measurable": 0, "share": 0.5, "share_low": 0.45, "share_high": 0.55, "excess": 0.2,
         "excess_low": 0.1, "excess_high": 0.3},
        {**base, "n": 38, "n_not_measurable": 2, "share": 0.3, "share_low": 0.2, "share_high": 0.4, "excess": 0.0,
         "excess_low": -0.1, "excess_high": 0.1},
        {**base, "n": 0, "n_patients": 0, "n_not_measurable": 40, "share": nan, "share_low": nan, "share_high": nan,
         "excess": nan, "excess_low": nan, "excess_high": nan},
    ])
    lines = rsal.excess_statements(table, input_size=128, validated=True).splitlines()
    assert "above the uniform baseline at 16x16 cells (one cell 8 px)" in lines[0]
    assert "not distinguishable" in lines[1] and "inconclusive" in lines[1] and "2 of 40 maps not measurable" in lines[1]
    assert "not measurable" in lines[2] and "distinguishable" not in lines[2]
    assert not any("reproduc" in line for line in lines)
    brief = rsal.excess_brief(table.assign(pretrain="kermany_full")).splitlines()
    assert brief[0] == "- resnet18 · kermany_full · none · CORDA, trained on: excess 0.20 [0.10, 0.30] (40 maps, 16x16 cells)"
    assert brief[1].endswith("excess 0.00 [-0.10, 0.10] (38 maps, 16x16 cells)") and "n/a" in brief[2]
    assert rsal.excess_brief(table.iloc[:0]) == ""
    tally = rsal.excess_tally(table.assign(did_not_learn=[False, False, False])).splitlines()
    assert tally == ["- trained on: 2 models, interval above 0 for 1, below 0 for 0, including 0 for 1; excess "
                     "+0.00 to +0.20 (1 with no measurable map not counted)"]


@pytest.mark.parametrize("excess, low, high, expect, absent", [
    (-0.10, -0.15, -0.05, "below the uniform baseline", "inconclusive"),
    (-0.02, -0.08, 0.04, "inconclusive", "below"),
    (0.00, -0.01, 0.00, "inconclusive", "below"),  # an excess at zero is no finding
    (0.10, 0.05, 0.15, "above the uniform baseline", "inconclusive"),
])
def test_excess_verdict_follows_the_interval(excess, low, high, expect, absent):
    v = rsal.excess_verdict(excess, low, high, n_measured=60, n_patients=30, n_maps=60, cells=16, validated=True)
    assert expect in v and absent not in v and "reproduc" not in v
    assert ("DeGrave" in v) and ("not checked" not in v)
    assert "not checked on a planted mark" in rsal.excess_verdict(excess, low, high, n_measured=60, n_patients=30,
                                                                 n_maps=60, cells=16)


def test_excess_verdict_refuses_to_conclude_on_too_little():
    kw = dict(n_maps=40, cells=4)
    assert rsal.excess_verdict(-0.2, -0.3, -0.1, n_measured=2, n_patients=1, **kw).startswith("too few measurable maps")
    assert rsal.excess_verdict(-0.2, -0.3, -0.1, n_measured=2, n_patients=12, **kw).startswith("below")
    assert rsal.excess_verdict(-0.2, -0.3, -0.1, n_measured=2, n_patients=12, min_patients=20, **kw).startswith("too few")
    assert rsal.excess_verdict(np.nan, np.nan, np.nan, n_measured=0, n_patients=0, **kw).startswith("not measurable")
    unchecked = rsal.excess_verdict(-0.2, -0.3, -0.1, n_measured=30, n_patients=20, validated=False, **kw)
    assert unchecked.startswith("no conclusion") and "planted mark" in unchecked and "below" not in unchecked


# ------------------------------------------------------------------------------ layer and status
def test_layer_choice_gives_at_least_16_cells():
    torch.manual_seed(0)
    r18, c8 = create_model("resnet18", num_classes=2).eval(), create_model("conv8", num_classes=2).eval()
    assert sal.layer_sides(r18, 128) == {"layer4": 4, "layer3": 8, "layer2": 16, "layer1": 32}
    assert sal.choose_layer(r18, 128) == ("layer2", 16)  # the deepest with 16x16
    assert sal.choose_layer(r18, 128, min_cells=8) == ("layer3", 8)
    assert sal.choose_layer(r18, 64) == ("layer1", 16)  # smoke inputs: one stage shallower
    assert sal.choose_layer(c8, 128) == ("features", 16)  # Conv8's last map is already 16x16
    with pytest.raises(ValueError, match="16x16"):
        sal.choose_layer(c8, 64)
    assert sal.resolve_layer(r18, 128, None) == ("layer4", 4) == sal.resolve_layer(r18, 128, "cam")
    assert sal.last_layer(c8) == "features" and sal.target_layer(r18, "layer2") is r18.layer2
    with pytest.raises(ValueError, match="no saliency layer"):
        sal.target_layer(r18, "fc")
    x = torch.randn(2, 1, 64, 64)
    raw = sal.package_maps(r18, x, "gradcam", layer="layer1")
    assert raw.shape == (2, 16, 16) and (raw >= 0).all()
    assert sal.saliency_maps(r18, x, "hirescam", layer="layer1").shape == (2, 64, 64)
    with pytest.raises(ValueError, match="last feature map"):
        sal.saliency_maps(r18, x, "cam", layer="layer1")


def test_gradient_times_input_finds_the_pixel_a_linear_model_weighs():
    class Linear(torch.nn.Module):  # log-odds = sum(w * x): gradient x input is w * x exactly
        def __init__(self, w):
            super().__init__()
            self.w = w

        def forward(self, x):
            z = (self.w * x).sum((1, 2, 3))
            return torch.stack([-z / 2, z / 2], 1)

    w = torch.zeros(1, 1, 8, 8)
    w[0, 0, 1, 6] = 2.0
    w[0, 0, 5, 2] = -1.0
    x = torch.ones(2, 1, 8, 8)
    x[1] *= -1  # darker than the mean: the same weight now lowers the log-odds
    m = sal.saliency_maps(Linear(w), x, "gradinput")
    assert m.shape == (2, 8, 8) and m[0, 1, 6] == pytest.approx(2.0) and m[0].sum() == pytest.approx(2.0)
    assert m[1, 5, 2] == pytest.approx(1.0) and m[1].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at the input"):
        sal.saliency_maps(Linear(w), x, "gradinput", layer="layer2")
    assert sal.resolve_layer(Linear(w), 8, "input") == ("input", 8)


def test_map_status_counts_maps_that_place_nothing():
    maps = np.zeros((5, 8, 8))
    maps[1] = 0.7  # constant
    maps[2, 0, 0] = 1.0  # measured
    maps[3, 2:4, 2:4] = 2.0  # measured, but its image has no mask
    maps[4] = 1.0
    maps[4, 0, 0] = 1.0 + 1e-3  # nearly constant, yet it places something
    status = sal.map_status(maps, has_mask=np.array([True, True, True, False, True]))
    assert status.tolist() == ["no positive mass", "constant", "measured", "no mask", "measured"]
    counts = sal.status_counts(status)
    assert counts == {"n_measured": 2, "n_no_mask": 1, "n_no_positive_mass": 1, "n_constant": 1, "n_not_measurable": 2}


# --------------------------------------------------------------------------- check on a planted mark
def test_region_box_pads_and_clips():
    r = np.zeros((2, 16, 16), bool)
    r[0, 1:3, 2:4] = True
    box = sal.region_box(r, pad=2)
    assert box[0].sum() == 5 * 6 and box[0, 0, 0] and box[0, 4, 5] and not box[0, 5, 0]
    assert not box[1].any()  # no mark left: no box


def _check_maps(n: int, inside: float, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.zeros((n, 32, 32), bool)
    boxes[:, :8, :8] = True  # area share 1/16
    plain = rng.uniform(0.5, 1.0, (n, 32, 32))
    marked = plain.copy()
    marked[:, :8, :8] += inside * rng.uniform(0.5, 1.5, (n, 1, 1))
    return marked, plain, boxes


def test_mark_check_finds_a_map_on_the_mark_and_not_an_even_one():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(20), 2).astype(str)
    marked, plain, boxes = _check_maps(40, 4.0, rng)
    c = sal.mark_check(marked, plain, boxes, groups, n_boot=300)
    assert c["found"] and c["marked_baseline"] == pytest.approx(1 / 16)
    assert c["marked_share"] > 0.2 and c["marked_excess_low"] > 0 and c["diff_low"] > 0
    assert abs(c["unmarked_excess"]) < 0.02 and c["marked_n_measured"] == 40
    even, plain, boxes = _check_maps(40, 0.0, rng)
    c = sal.mark_check(even, plain, boxes, groups, n_boot=300)
    assert not c["found"] and c["diff_low"] <= 0 <= c["diff_high"]
    # maps that place nothing are counted and do not pass as found
    marked, plain, boxes = _check_maps(40, 4.0, rng)
    marked[:30] = 0.0
    c = sal.mark_check(marked, plain, boxes, groups, n_boot=300)
    assert c["marked_n_no_positive_mass"] == 30 and c["marked_n"] == 10 and c["marked_n_not_measurable"] == 30


def test_uses_mark_and_layer_validated():
    assert rsal.uses_mark(0.05) and not rsal.uses_mark(-0.01) and not rsal.uses_mark(np.nan)
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    plain = rng.uniform(0, 1, 80)
    t = pd.DataFrame({"label": y, "group_id": [f"p{i // 2}" for i in range(80)], "score_unmarked": plain,
                      "score_marked": np.clip(plain + 0.6, 0, 1)})  # the mark raises every score
    a = rsal.variant_aucs(t, n_boot=300)
    assert a["auc_marked"] > 0.85 and a["auc_flipped"] < 0.15 and a["auc_diff_low"] > 0.5
    assert a["auc_diff"] == pytest.approx(a["auc_marked"] - a["auc_flipped"])
    blind = rsal.variant_aucs(t.assign(score_marked=plain), n_boot=300)  # a model that ignores it
    assert blind["auc_diff"] == 0 and not rsal.uses_mark(blind["auc_diff_low"])
    check = pd.DataFrame({"layer": ["layer2", "layer4", "layer2", "layer2"], "uses_mark": [True, True, False, True],
                          "mark_in_box": [True, True, True, False], "found": [True, False, False, False]})
    assert rsal.layer_validated(check, "layer2") is True and rsal.layer_validated(check, "layer4") is False
    from covid_lib.runs import RunSpec

    assert rsal.mark_in_box(RunSpec("CORDA", profile="smoke", pipeline="none", plant="corner"))
    assert not rsal.mark_in_box(RunSpec("CORDA", profile="smoke", pipeline="paper", plant="corner"))
    assert rsal.layer_validated(check[check["uses_mark"] == False], "layer2") is None  # noqa: E712
    assert rsal.layer_validated(pd.DataFrame(), "layer2") is None


@pytest.mark.data
@pytest.mark.slow
def test_planted_saliency_of_a_smoke_run(data_root, tmp_path, monkeypatch):
    """The whole check on a smoke planted run: both copies of the same test images, the mark's box
    in the top-left corner of the input (where the marked image is bright), maps per layer."""
    from covid_lib import runs

    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    spec = runs.RunSpec("CORDA", profile="smoke", pipeline="none", plant="corner").resolved(data_root)
    runs.run(spec, data_root=data_root, device="cpu", progress=False)
    res = sal.planted_saliency(spec, data_root=data_root, views=(("gradcam", "auto"), ("gradcam", None),
                                                                  ("gradinput", None)))
    n, size = len(res.table), spec.input_size
    assert res.cells == {"gradcam · layer1": 16, "gradcam · layer4": 2, "gradinput · input": 64}
    assert n > 0 and res.images.shape == (n, size, size)
    for name in res.cells:
        assert res.marked_maps[name].shape == res.plain_maps[name].shape == res.boxes[name].shape == (n, size, size)
    box = res.boxes["gradcam · layer1"]
    assert box.any(axis=(1, 2)).all() and not box[:, size // 2:, :].any() and not box[:, :, size // 2:].any()
    assert res.images[box].mean() > res.images[~box].mean()  # the white glyph sits in the box
    key = "gradinput · input"
    check = sal.mark_check(res.marked_maps[key], res.plain_maps[key], res.boxes[key], res.table["group_id"], n_boot=50)
    assert check["marked_n_measured"] + check["marked_n_not_measurable"] == n
    assert 0 < check["marked_baseline"] < 0.25
    assert (res.table["change_in_box"] > res.table["change_outside"]).all()  # pipeline none keeps the glyph
    # the record's test scores, every variant, rebuilt from the checkpoint (the guard's re-scoring)
    again = runs.rescore_record(spec, data_root=data_root)
    same = runs.compare_scores(again, runs.Record.of(spec).scores())
    assert same["matches"] and same["images"] == 3 * n


# ------------------------------------------------------------------------- the models the chapter maps
def test_mapped_specs_pair_pipeline_none_with_their_paper_twins():
    from covid_lib.grid import ablation_grid, table2_grid

    assert (ablation_grid("kermany_full"), table2_grid("kermany_full")) == ("ablation_full", "table2_full")
    assert (ablation_grid("kermany"), ablation_grid(None)) == ("ablation", "ablation")
    specs = rsal.mapped_specs("cpu", "kermany_full", data_version="test")
    none = [s for s in specs if s.pipeline == "none"]
    twins = [s for s in specs if s.pipeline == "paper"]
    assert len(none) == len(twins) == 12 and specs == none + twins  # 2 pre-trainings x 2 compositions x 3 seeds
    key = lambda s: (s.arch, s.pretrain, s.composition, s.seed)  # noqa: E731
    assert sorted(map(key, none), key=str) == sorted(map(key, twins), key=str)
    assert {s.pretrain for s in specs} == {None, "kermany_full"} and {s.arch for s in specs} == {"resnet18"}
    assert all(s.task == "covid" for s in specs)
    small = rsal.mapped_specs("cpu", "kermany", data_version="test")
    assert {s.pretrain for s in small} == {None, "kermany"} and len(small) == 8


def test_the_whole_chestxray_set_counts_kermany_as_pre_trained_on(monkeypatch):
    import covid_lib.data as data
    from covid_lib.runs import RunSpec

    rows = pd.DataFrame({"source": ["cohen", "cohen", "nih"], "split": ["train", "val", "test"]})
    monkeypatch.setattr(data, "compose", lambda name, data_root=None, seed=0: rows)
    for pretrain in ("kermany_full", "kermany"):
        trained, pretrained = rsal.trained_sources(RunSpec("CORDA", pretrain=pretrain, profile="cpu"))
        assert trained == {"cohen"} and pretrained == {"kermany"}
        assert rsal.seen_status("kermany", trained=trained, pretrained=pretrained) == "pre-trained on"
    assert rsal.trained_sources(RunSpec("CORDA", profile="cpu"))[1] == set()


def _record(spec, results, *, note: dict | None = None, storage=None):
    """A complete record of ``spec`` under ``results`` and, with ``storage``, a cached checkpoint
    with ``note``."""
    import json

    from covid_lib import runs

    path = results / spec.run_id
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({"best_value": 0.9, "did_not_learn": False}))
    if storage is not None:
        runs.write_checkpoint(runs.RunArtifacts(spec, {}, b"weights"), storage, note=note)


def test_checkpoint_state_and_text_say_what_the_cache_holds(tmp_path, monkeypatch):
    from covid_lib import runs

    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    storage = tmp_path / "ckpt"
    specs = [runs.RunSpec("CORDA", profile="cpu", seed=s) for s in range(4)]
    _record(specs[0], tmp_path / "results", storage=storage, note={
        "origin": runs.fidelity.CHECKED, "matches_record": True, "max_abs_diff": 0.0, "images": 454})
    _record(specs[1], tmp_path / "results", storage=storage, note={
        "origin": runs.fidelity.CHECKED, "matches_record": False, "max_abs_diff": 0.26, "images": 258})
    _record(specs[2], tmp_path / "results")
    ids = [s.run_id for s in specs]
    assert rsal.checkpoint_state("done", ids[0], storage) == "done"
    assert rsal.checkpoint_state("done", ids[1], storage) == runs.DIFFERS
    assert rsal.checkpoint_state("done", ids[2], storage) == "no checkpoint"
    assert rsal.checkpoint_state("missing", ids[3], storage) == rsal.NOT_YET == "not yet recorded"
    assert rsal.checkpoint_state("collapsed", ids[0], storage) == "collapsed"
    assert rsal.checkpoint_text(ids[0], storage) == "matches its record (max |Δ score| 0 on 454 recorded test images)"
    assert rsal.checkpoint_text(ids[1], storage).startswith("differs from its record (max |Δ score| 0.26 on 258")
    assert rsal.checkpoint_text(ids[2], storage) == "not cached here"
    runs.write_checkpoint(runs.RunArtifacts(specs[2], {}, b"old"), storage)  # cached before the guard
    assert rsal.checkpoint_text(ids[2], storage) == "not checked against its record"


def test_verify_checkpoints_rescores_only_cached_recorded_runs(tmp_path, monkeypatch):
    from covid_lib import runs

    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    storage = tmp_path / "ckpt"
    specs = [runs.RunSpec("CORDA", profile="cpu", seed=s) for s in range(3)]
    _record(specs[0], tmp_path / "results", storage=storage)  # recorded and cached
    _record(specs[1], tmp_path / "results")  # recorded, not cached: never retrained here
    runs.write_checkpoint(runs.RunArtifacts(specs[2], {}, b"w"), storage)  # cached, no record
    asked = []

    def matches(spec, **kw):
        asked.append(spec.run_id)
        return {"images": 5, "max_abs_diff": 0.1, "matches": False}

    monkeypatch.setattr(runs, "checkpoint_matches_record", matches)
    out = rsal.verify_checkpoints([specs[0], *specs, specs[0]], storage=storage)
    assert asked == [specs[0].run_id]
    assert out.to_dict("records") == [{"run_id": specs[0].run_id, "images": 5, "max_abs_diff": 0.1, "matches": False}]
    assert rsal.verify_checkpoints([], storage=storage).columns.tolist() == ["run_id", "images", "max_abs_diff",
                                                                              "matches"]


def test_the_planted_check_uses_a_model_trained_here_only_when_asked(tmp_path, monkeypatch):
    """A planted checkpoint that differs from its record is measured with ``trained_here`` (its
    state says so, and the display's model column), and keeps an unmeasured row without it."""
    from covid_lib.report import planted as rp
    from covid_lib.runs import DIFFERS, RunSpec

    spec = RunSpec("CORDA", profile="cpu", pipeline="none", plant="corner")
    monkeypatch.setattr(rp, "planted_records", lambda specs, results=None: pd.DataFrame(
        [{"mark": "corner", "pipeline": "none", "run_id": spec.run_id, "status": "done"}]))
    monkeypatch.setattr(rsal, "checkpoint_state", lambda status, run_id, storage=None: DIFFERS)
    monkeypatch.setattr(rsal, "checkpoint_text", lambda run_id, storage=None: "differs from its record (0.26)")
    rng = np.random.default_rng(1)
    marked, plain, boxes = _check_maps(40, 4.0, rng)
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    table = pd.DataFrame({"label": y, "group_id": [f"p{i // 2}" for i in range(40)],
                          "score_unmarked": rng.uniform(0, 0.5, 40), "change_in_box": 0.2, "change_outside": 0.01})
    table["score_marked"] = table["score_unmarked"] + 0.5
    allowed = []

    def planted_saliency(s, **kw):
        allowed.append(kw["allow_mismatch"])
        return sal.PlantedSaliency(table, np.zeros((40, 32, 32), np.uint8), {"gradinput · input": marked},
                                   {"gradinput · input": plain}, {"gradinput · input": boxes}, {"gradinput · input": 32})

    monkeypatch.setattr(rsal, "planted_saliency", planted_saliency)
    refused, _ = rsal.planted_check([spec], n_boot=100)
    assert allowed == [] and refused["state"].tolist() == [DIFFERS] and "layer" not in refused
    assert rsal.layer_validated(refused, "gradinput · input") is None
    check, res = rsal.planted_check([spec], n_boot=100, trained_here=True)
    assert allowed == [True] and list(res) == [spec.run_id]
    assert check["state"].tolist() == [DIFFERS] and bool(check["uses_mark"].iloc[0]) and bool(check["found"].iloc[0])
    assert rsal.layer_validated(check, "gradinput · input") is True
    shown = rsal.check_display(check)
    assert shown["model"].tolist() == ["trained here, not the recorded model"]
    assert rsal.check_display(check.assign(state="done"))["model"].tolist() == ["the recorded model"]
