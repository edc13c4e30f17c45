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
                "has_mask": True}))
    return pd.concat(parts, ignore_index=True)


def test_summary_effect_and_figures():
    per_image = _per_image()
    t = rsal.summary_table(per_image, n_boot=200)
    assert len(t) == 4 and set(t["group"]) == {"trained on", "unseen"}
    assert ((t["share_low"] <= t["share"]) & (t["share"] <= t["share_high"])).all()
    f = rsal.format_summary(t)
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
    assert t["has_mask"].all() and t["share"].between(0, 1).all() and t["baseline"].between(0.02, 0.98).all()
    # geometry: the paper chain blanks the image outside its mask (blurred, sigma 3 px), so in the
    # model's input nothing bright lies farther than ~3 sigma from the mask we measure with; a
    # mask resized instead of centre-cropped, or not cropped, would leave lung pixels out there
    from scipy.ndimage import binary_dilation

    far = ~np.stack([binary_dilation(m, iterations=10) for m in res.masks])
    assert res.images[far].max() <= 16 and res.images[res.masks].mean() > 40
    other = runs.RunSpec("CORDA", profile="smoke", seed=5).resolved(data_root)  # never trained
    records = spec_records([spec, other])
    per_image, results, status = rsal.collect(records, [spec, other], rows, data_root=data_root)
    assert status.set_index("run_id").loc[other.run_id, "state"] == "missing"
    assert set(per_image["seen"]) == {"trained on", "unseen"} and list(results) == [spec.run_id]
    assert set(per_image.loc[per_image["seen"] == "trained on", "source"]) == {"cohen"}
    table = rsal.summary_table(per_image, n_boot=100)
    assert len(table) == 2 and rsal.format_summary(table)["test group"].tolist() == ["trained on", "unseen"]
    high, low = rsal.extremes(per_image, spec.run_id, k=2)
    assert high["share"].min() >= low["share"].max()
    assert rsal.gallery(rsal.gallery_items(per_image, results, pd.concat([high, low]))) is not None


def test_excess_statements_say_where_the_interval_lies_and_name_unmeasurable_models():
    import pandas as pd

    from covid_lib.report import saliency as rsal

    base = dict(arch="resnet18", pretrain=None, pipeline="none", composition="CORDA", did_not_learn=False,
                group="trained on", baseline=0.3)
    table = pd.DataFrame([
        {**base, "share": 0.5, "share_low": 0.45, "share_high": 0.55, "excess": 0.2, "excess_low": 0.1, "excess_high": 0.3},
        {**base, "share": 0.3, "share_low": 0.2, "share_high": 0.4, "excess": 0.0, "excess_low": -0.1, "excess_high": 0.1},
        {**base, "share": float("nan"), "share_low": float("nan"), "share_high": float("nan"),
         "excess": float("nan"), "excess_low": float("nan"), "excess_high": float("nan")},
    ])
    lines = rsal.excess_statements(table).splitlines()
    assert "above the uniform baseline" in lines[0] and "not distinguishable" in lines[1]
    assert "not measurable" in lines[2] and "distinguishable" not in lines[2]
