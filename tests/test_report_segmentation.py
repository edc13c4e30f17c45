"""The segmentation chapter's helpers (covid_lib.report.segmentation, covid_lib.report.chain) on synthetic arrays."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from covid_lib.report import chain
from covid_lib.report import segmentation as seg
from covid_lib.models.weights import DEFAULT_WEIGHTS
from covid_lib.preprocess import Pipeline, PreprocessError, check_mask, crop_to_lungs

H, W = 120, 150
PIPE = Pipeline(image_size=64)


def _lungs(h: int = H, w: int = W, *, top: float = 0.2, bottom: float = 0.85) -> np.ndarray:
    """Two vertical ellipses, like a pair of lungs, spanning rows ``top``-``bottom`` of the image."""
    yy, xx = np.mgrid[:h, :w] / np.array([h, w])[:, None, None]
    cy, ry = (top + bottom) / 2, (bottom - top) / 2
    left = ((yy - cy) / ry) ** 2 + ((xx - 0.3) / 0.14) ** 2 < 1
    right = ((yy - cy) / ry) ** 2 + ((xx - 0.7) / 0.14) ** 2 < 1
    return left | right


def _image(mask: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """A grey image with darker lungs, noise and a near-white letter-sized mark in a corner."""
    rng = np.random.default_rng(seed)
    mask = _lungs() if mask is None else mask
    img = 150 + rng.normal(0, 10, mask.shape)
    img[mask] -= 70
    img[3:9, 3:8] = 255  # a side marker outside the lungs
    return np.clip(img, 0, 255).astype(np.uint8)


def _prob(mask: np.ndarray, size: int = 32) -> np.ndarray:
    from PIL import Image

    small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)) / 255
    return np.where(small > 0.5, 0.95, 0.02).astype(np.float32)


class FakeUNet(torch.nn.Module):
    """Returns the same logits (two lungs) for every input, at ``input_size``."""

    input_size = 32

    def __init__(self, mask: np.ndarray | None = None):
        super().__init__()
        prob = _prob(_lungs() if mask is None else mask, self.input_size)
        self.logits = torch.from_numpy(np.log(prob / (1 - prob)))

    def forward(self, x):
        return self.logits[None, None].expand(x.shape[0], 1, -1, -1).clone()


def _scores(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for source, centre, n in (("montgomery", 0.97, 20), ("shenzhen", 0.95, 40)):
        for i in range(n):
            d = float(np.clip(rng.normal(centre, 0.01), 0, 1))
            rows.append({"image_id": f"{source}-{i}", "patient_id": f"{source}:{i}", "source": source,
                         "view": "PA" if i % 2 else "AP", "dice": d, "iou": d / (2 - d),
                         "coverage": d, "precision": 0.99})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- score tables
def test_score_table_per_group_and_overall():
    scores = _scores()
    table = seg.score_table(scores, ("dice", "iou"), by="source")
    assert set(table["group"]) == {"montgomery", "shenzhen", "all"}
    assert len(table) == 6
    row = table[(table["group"] == "montgomery") & (table["metric"] == "dice")].iloc[0]
    mean = scores.loc[scores["source"] == "montgomery", "dice"].mean()
    assert row["mean"] == pytest.approx(mean, abs=1e-4)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"] and row["images"] == 20 and row["patients"] == 20
    everything = table[(table["group"] == "all") & (table["metric"] == "dice")].iloc[0]
    assert everything["images"] == 60 and everything["min"] == pytest.approx(scores["dice"].min(), abs=1e-4)
    # one group only: no redundant "all" row; by=None: only "all"
    one = seg.score_table(scores[scores["source"] == "shenzhen"], ("dice",), by="source")
    assert list(one["group"]) == ["shenzhen"]
    assert list(seg.score_table(scores, ("dice",), by=None)["group"]) == ["all"]


def test_format_score_table_writes_mean_interval_and_median():
    table = seg.score_table(_scores(), ("dice",), by="source")
    shown = seg.format_score_table(table, digits=2)
    assert list(shown.index) == ["montgomery", "shenzhen", "all"]
    cell = shown.loc["montgomery", "Dice mean [95% CI]"]
    assert cell.startswith("0.97 [") and cell.endswith("]")
    assert shown.loc["all", "images"] == 60


def test_compare_with_record_and_worst_cases():
    live = _scores()
    recorded = live.copy()
    recorded.loc[3, "dice"] += 0.002
    cmp = seg.compare_with_record(live, recorded, ("dice", "iou"))
    assert cmp.loc["Dice", "max |live - recorded|"] == pytest.approx(0.002)
    assert cmp.loc["IoU", "max |live - recorded|"] == 0 and cmp.loc["Dice", "images matched"] == 60
    worst = seg.worst_cases(live, 3)
    assert list(worst["dice"]) == sorted(live["dice"])[:3]
    per = seg.worst_cases(live, 2, by="source")
    assert per.groupby("source").size().to_dict() == {"montgomery": 2, "shenzhen": 2}


def test_score_distribution_figure_has_one_panel_per_score():
    fig = seg.plot_score_distributions(_scores(), ("dice", "coverage", "precision"), by="view", title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert [t.get_text().split("\n")[0] for t in fig.axes[0].get_yticklabels()] == ["AP", "PA"]


# ----------------------------------------------------------------------------- masks
def test_disagreement_maps_count_missed_and_extra_pixels():
    ref = np.zeros((40, 40), bool)
    ref[:, :20] = True  # left half
    pred = np.zeros((40, 40), bool)
    pred[:, :10] = True  # left quarter
    pred[:, 30:] = True  # and a wrong right quarter
    maps = seg.disagreement_maps([ref, ref], [pred, pred], size=8)
    assert maps["n"] == 2 and maps["reference"].shape == (8, 8)
    assert np.allclose(maps["missed"][:, 2:4], 1) and np.allclose(maps["missed"][:, :2], 0)
    assert np.allclose(maps["extra"][:, 6:], 1) and maps["extra"][:, :6].sum() == 0
    assert maps["reference"].mean() == pytest.approx(0.5)
    fig = seg.plot_disagreement(maps, reference="V7 mask")
    assert len(fig.axes) == 8  # four maps and their colour bars
    empty = seg.disagreement_maps([], [])
    assert empty["n"] == 0 and empty["missed"].sum() == 0


def test_predict_masks_with_a_fake_unet_and_the_case_figure():
    from covid_lib.segment import predict_masks, score_masks

    lungs = _lungs()
    manifest = pd.DataFrame({"image_id": ["a", "b"], "image_path": ["img", "img"], "mask_path": ["ref", "ref"]})

    def read(path):
        return _image() if path == "img" else lungs.astype(np.uint8) * 255

    out = predict_masks(FakeUNet(), manifest, batch_size=1, read=read)
    assert [m["image_id"] for m in out] == ["a", "b"]
    assert out[0]["pred"].shape == (H, W) and out[0]["ref"].dtype == bool
    from covid_lib.segment import dice_iou

    assert dice_iou(out[0]["pred"], out[0]["ref"])[0] > 0.9
    scores = score_masks(out)  # the same masks, scored without a second U-Net pass
    assert scores["dice"].tolist() == [dice_iou(m["pred"], m["ref"])[0] for m in out]
    fig = seg.plot_mask_cases([{**m, "label": m["image_id"]} for m in out], ncols=4, reference="V7 mask")
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_xlabel() for ax in shown] == ["a", "b"]
    for ax, m in zip(shown, out):
        assert np.array_equal(ax.images[0].get_array(), m["image"])  # the image itself, in grey
        tint = np.asarray(ax.images[1].get_array())  # cyan: reference lung missed; magenta: ours only
        assert (tint[..., 3] > 0).sum() == (m["ref"] ^ m["pred"]).sum()
        assert len(ax.collections) == 2  # the reference contour and ours
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "V7 mask", "our U-Net mask", "V7 mask only (missed)", "ours only (extra)"]
    empty = seg.plot_mask_cases([])
    assert isinstance(empty, Figure) and not [ax for ax in empty.axes if ax.axison or ax.images]


def test_run_record_and_departures_tables_read_the_record():
    record = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    table = seg.run_record_table(record)
    assert record["git_commit"] in table.loc["git commit", "value"]
    assert record["data_version"] in table.loc["data version", "value"]
    assert f"epoch {record['best_epoch']}" in table.loc["checkpoint", "value"]
    dep = seg.departures_table(record, Pipeline(image_size=256, blur_radius=3.0))
    assert f"{record['config']['image_size']} x {record['config']['image_size']} px" in dep.loc["U-Net input", "here"]
    assert "sigma 3 px at the chain's 256 x 256 px" in dep.loc["blur of the mask", "here"]
    assert "not stated" in dep.loc["initialisation", "paper (Sec. III-B)"]
    assert len(seg.plot_training_curve(record).axes) == 2
    assert seg.run_record_table({}).loc["command", "value"] == "?"


# ----------------------------------------------------------------------------- chain
def test_rejection_kind_classifies_the_library_errors():
    empty = np.zeros((50, 50), bool)
    cases = []
    for mask, kept in ((empty, 1.0), (_lungs(50, 50), 0.5), (np.pad(np.ones((3, 3), bool), 23), 1.0),
                       (np.ones((50, 50), bool), 1.0)):
        with pytest.raises(PreprocessError) as err:
            check_mask(mask, kept_fraction=kept)
        cases.append(chain.rejection_kind(err.value.step, str(err.value)))
    assert cases == ["empty mask", "fragmented mask", "mask too small", "mask too large"]
    with pytest.raises(PreprocessError) as err:
        crop_to_lungs(np.zeros((50, 50)), _lungs(50, 50, top=0.1, bottom=0.4))
    assert chain.rejection_kind(err.value.step, str(err.value)) == "crop under half"
    assert chain.rejection_kind("input", "blank or uniform image") == "unusable image"
    assert chain.rejection_kind("normalize", "constant image") == "blank after masking"


def test_chain_stages_keep_every_step_and_the_reasons():
    lungs = _lungs()
    stages = chain.chain_stages(_image(), _prob(lungs), PIPE)
    assert stages.mask.shape == (H, W) and stages.probability.shape == (32, 32)
    assert stages.output.shape == (64, 64) and stages.crop.shape == (64, 64)
    assert 0 <= stages.output.min() and stages.output.max() == pytest.approx(1)
    assert stages.rejected == {"chain": None, "crop": None}
    assert stages.blurred.max() <= 1 and 0 < stages.blurred.mean() < 1
    assert stages.info["crop_height"] == pytest.approx(0.65, abs=0.05)
    # lungs in the top third: the chain accepts, the ROI crop refuses
    short = _lungs(top=0.05, bottom=0.4)
    stages = chain.chain_stages(_image(short), _prob(short), PIPE)
    assert stages.output is not None and stages.crop is None
    assert stages.rejected["crop"].startswith("crop under half")
    # no lung at all: both refuse, for the same reason
    stages = chain.chain_stages(_image(), np.zeros((32, 32), np.float32), PIPE)
    assert stages.output is None and stages.crop is None and stages.blurred is None
    assert stages.rejected["chain"].startswith("empty mask") and stages.rejected["crop"] == stages.rejected["chain"]
    for columns, transpose in ((("original", "equalised", "mask", "output", "crop"), False),
                               (("mask", "output"), True)):
        fig = chain.plot_chain_grid([("a", stages), ("b", stages)], columns, transpose=transpose, title="t")
        assert len(fig.axes) == 2 * len(columns)
    assert len(chain.plot_chain(stages, pipeline=PIPE).axes) == 8
    empty = chain.plot_chain_grid([])
    assert isinstance(empty, Figure) and not [ax for ax in empty.axes if ax.axison or ax.images]


def test_small_marks_are_letters_not_regions_or_noise():
    white = np.zeros((100, 100), bool)
    white[5:10, 5:9] = True  # a letter: 20 px
    white[50:100, :] = True  # a saturated region: half the image
    white[30, 30] = True  # one noisy pixel
    marks = chain.small_marks(white)
    assert marks.sum() == 20 and marks[5:10, 5:9].all()
    assert not chain.small_marks(np.zeros((10, 10), bool)).any()


def test_diagnose_image_measures_area_intensity_and_marks():
    lungs = _lungs()
    img = _image()
    row = chain.diagnose_image(img, _prob(lungs), PIPE)
    assert row["chain_rejection"] == "" and row["crop_rejection"] == ""
    assert row["mask_area"] == pytest.approx(lungs.mean(), rel=0.1)
    assert row["mean_inside"] < row["mean_outside"] - 50
    assert row["marks_outside"] == pytest.approx(30 / img.size) and row["marks_inside"] == 0
    assert row["near_white_outside"] >= row["marks_outside"]
    frag = chain.diagnose_image(img, np.zeros((32, 32), np.float32), PIPE)
    assert frag["chain_rejection"] == "empty mask" and frag["crop_rejection"] == ""
    assert "empty" in frag["chain_reason"]


def _manifest() -> pd.DataFrame:
    rows = []
    for source, n in (("cohen", 3), ("kermany", 2)):
        for i in range(n):
            rows.append({"image_id": f"{source}{i}", "source": source, "view": "PA", "patient_id": f"p{i}",
                         "image_path": "blank" if (source, i) == ("kermany", 1) else "img"})
    return pd.DataFrame(rows)


def test_chain_diagnostics_counts_and_summaries():
    def read(path):
        return np.full((H, W), 100, np.uint8) if path == "blank" else _image()

    diag = chain.chain_diagnostics(_manifest(), FakeUNet(), PIPE, batch_size=2, read=read)
    assert len(diag) == 5 and set(diag["source"]) == {"cohen", "kermany"}
    blank = diag[diag["image_id"] == "kermany1"].iloc[0]
    assert blank["chain_rejection"] == "unusable image" and "uniform" in blank["chain_reason"]
    counts = chain.rejection_counts(diag)
    assert counts.loc["cohen", "kept by the paper chain"] == 3 and counts.loc["kermany", "unusable image"] == 1
    assert counts.loc["all", "images"] == 5 and counts.loc["all", "kept with the ROI crop"] == 4
    assert {"empty mask", "fragmented mask", "crop under half"} <= set(counts.columns)
    area = chain.area_summary(diag)
    assert area.loc["cohen", "images"] == 3 and area.loc["kermany", "images"] == 1
    assert area.loc["cohen", "images with marks outside %"] == 100
    assert area.loc["cohen", "grey level inside"] < area.loc["cohen", "grey level outside"]
    assert len(chain.plot_area_kept(diag).axes) == 2


# ----------------------------------------------------------------------------- chapter helpers
def test_rows_of_matches_source_and_id_in_the_order_of_the_keys():
    manifest = pd.DataFrame({"source": ["a", "b", "b"], "image_id": ["x", "x", "y"], "image_path": ["p1", "p2", "p3"]})
    keys = pd.DataFrame({"source": ["b", "a", "c"], "image_id": ["y", "x", "x"], "other": [1, 2, 3]})
    rows = chain.rows_of(keys, manifest)
    assert rows["image_path"].tolist() == ["p3", "p1"]  # (c, x) is not in the manifest


def test_stages_of_labels_and_runs_the_chain_once_per_row():
    rows = pd.DataFrame({"source": ["cohen", "nih"], "image_id": ["a" * 40, "b"], "view": ["AP", "PA"],
                         "image_path": ["img", "img"]})
    out = chain.stages_of(rows, FakeUNet(), PIPE, batch_size=1, read=lambda path: _image())
    assert [label for label, _ in out] == [f"cohen · {'a' * 32} · AP", "nih · b · PA"]
    assert all(isinstance(s, chain.ChainStages) and s.output is not None for _, s in out)
    bare = chain.stages_of(rows.head(1), FakeUNet(), PIPE, with_source=False, read=lambda path: _image())
    assert bare[0][0] == f"{'a' * 32} · AP"


def test_refused_crops_and_their_shortfall_per_source():
    diag = pd.DataFrame({"source": ["nih", "nih", "nih", "cohen"],
                         "crop_rejection": ["crop under half", "crop under half", "", "crop under half"],
                         "crop_height": [0.4, 0.6, 0.9, 0.45], "crop_width": [0.7, 0.3, 0.8, 0.48]})
    refused = chain.refused_crops(diag, 0.5)
    assert len(refused) == 3 and refused["side"].tolist() == [0.4, 0.3, 0.45]
    table = chain.crop_shortfall(refused)
    assert table.loc["nih"].tolist() == [2, 1, 1, 0.35, 0.3]
    assert table.loc["cohen", "height_under_half"] == 1 and table.loc["cohen", "width_under_half"] == 1


def test_format_ci_and_key_numbers():
    held = seg.score_table(_scores(), ("dice",), by="source")
    v7 = seg.score_table(_scores(1).assign(source="cohen"), ("dice", "coverage", "precision"), by=None)
    r = held[(held["group"] == "all") & (held["metric"] == "dice")].iloc[0]
    assert seg.format_ci(held, "all", "dice") == (
        f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] (n=60)")
    counts = pd.DataFrame({"images": [10], "kept by the paper chain": [8], "crop under half": [3]}, index=["all"])
    diag = pd.DataFrame({"mask_area": [0.2, 0.3, 0.4]})
    key = seg.key_numbers(held, v7, counts, diag)["value"]
    assert list(key.index) == ["held-out Dice, montgomery", "held-out Dice, shenzhen", "held-out Dice, all",
                               "V7 dice, all views", "V7 coverage, all views", "V7 precision, all views",
                               "refused by the paper chain", "refused by the ROI crop as well", "area kept, median"]
    assert key["refused by the paper chain"] == "2 of 10 frontal images"
    assert key["refused by the ROI crop as well"] == "3" and key["area kept, median"] == "30% of the image"


def test_as_jpeg_is_a_smaller_jpeg_than_the_png():
    import io

    import numpy as np
    from matplotlib.figure import Figure

    from covid_lib.report.common import as_jpeg

    fig = Figure(figsize=(4, 4))
    x = np.linspace(0, 1, 256)
    fig.subplots().imshow(np.outer(x, x) + np.random.default_rng(0).normal(0, 0.05, (256, 256)), cmap="gray")
    image = as_jpeg(fig, dpi=100)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    assert image.format == "jpeg" and image.data[:2] == b"\xff\xd8"
    assert len(image.data) < len(png.getvalue()) / 2
