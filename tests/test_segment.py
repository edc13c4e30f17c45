"""Lung segmentation: metrics, checkpoints, a tiny training run, CLI, and the committed weights."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch

from covid_lib import segment, stats
from covid_lib.cli import segment as segment_cli
from covid_lib.models import create_model
from covid_lib.models.weights import DEFAULT_WEIGHTS, load_unet, save_unet
from covid_lib.preprocess import PreprocessError, get_pipeline, predict_lung_mask, preprocess_image
from covid_lib.segment import TrainConfig, dice_iou, fit_unet

RECORD = DEFAULT_WEIGHTS.with_suffix(".json")


def _discs(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    xs, ys = np.empty((2, n, size, size), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(size * 0.15, size * 0.3)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.float32)
        ys[i] = disc
        xs[i] = np.clip(0.3 + 0.4 * disc + rng.normal(0, 0.05, (size, size)), 0, 1)
    return xs, ys


# ------------------------------------------------------------------------------------ metrics
def test_dice_iou_known_values():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :5] = True  # 50 px
    b[:, 2:7] = True  # 50 px, 30 shared
    dice, iou = dice_iou(a, b)
    assert dice == pytest.approx(0.6) and iou == pytest.approx(30 / 70)
    assert dice_iou(a, a) == (1.0, 1.0)
    assert dice_iou(a, ~a) == (0.0, 0.0)
    assert dice_iou(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        dice_iou(a, b[:5])


def test_summarize_reports_mean_ci_and_counts():
    scores = pd.DataFrame({"patient_id": list("aabbc"), "dice": [0.9, 0.95, 0.97, 0.96, 0.5],
                           "iou": [0.8, 0.9, 0.94, 0.92, 0.33]})
    s = segment.summarize(scores)
    assert s["n_images"] == 5 and s["n_patients"] == 3
    assert s["dice"]["mean"] == pytest.approx(0.856) and s["dice"]["min"] == 0.5
    assert s["dice"]["ci95"][0] <= s["dice"]["mean"] <= s["dice"]["ci95"][1]
    # the interval is the library's one patient bootstrap, N_BOOT resamples, rounded
    lo, hi = stats.bootstrap_ci(scores["dice"], groups=scores["patient_id"], n_boot=segment.N_BOOT)
    assert s["dice"]["ci95"] == [round(lo, 4), round(hi, 4)]
    assert "10,000" in s["ci"]


# -------------------------------------------------------------------------------- checkpoints
def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = create_model("unet", base_channels=4, depth=2).eval()
    path = save_unet(net, tmp_path / "w.pt", input_size=32, meta={"note": "x"})
    loaded = load_unet(path)
    assert loaded.input_size == 32 and loaded.meta == {"note": "x"} and not loaded.training
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), atol=0.05, rtol=0.05)  # float16 storage
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="segment train"):
        load_unet(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read U-Net checkpoint"):
        load_unet(bad)
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a covid_lib U-Net checkpoint"):
        load_unet(tmp_path / "other.pt")


# ---------------------------------------------------------------------------------- training
def test_augment_batch_keeps_shapes_and_ranges():
    xs, ys = _discs(4)
    x, y = segment.augment_batch(torch.from_numpy(xs)[:, None], torch.from_numpy(ys)[:, None],
                                 torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 1, 32, 32)
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and 0 <= float(y.min()) and float(y.max()) <= 1
    assert abs(float(y.mean()) - ys.mean()) < 0.05  # a small affine keeps most of the mask


def test_tiny_training_overfits_synthetic_discs():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    xs, ys = _discs(8)
    cfg = TrainConfig(image_size=32, base_channels=8, depth=2, epochs=25, batch_size=4, lr=1e-2, augment=False)
    rows = []
    model, history = fit_unet(xs, ys, xs, ys, cfg, log=rows.append)
    assert len(history) == len(rows) == 25
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    probs = segment.predict_probs(model, xs)
    dice = np.mean([dice_iou(p > 0.5, t > 0.5)[0] for p, t in zip(probs, ys)])
    assert dice > 0.9, history[-3:]


def test_cli_registers_train_and_eval():
    parser = argparse.ArgumentParser()
    segment_cli.register_cli(parser.add_subparsers(dest="group"))
    args = parser.parse_args(["segment", "eval", "--weights", "w.pt"])
    assert args.func is segment_cli._cmd_eval and args.weights == "w.pt" and args.device == "auto"
    args = parser.parse_args(["segment", "train", "--epochs", "3", "--image-size", "64", "--device", "cuda"])
    assert (args.epochs, args.image_size, args.device) == (3, 64, "cuda")
    assert parser.parse_args(["segment", "train"]).device == "auto"


def test_cli_train_defaults_are_the_train_config_defaults():
    from dataclasses import asdict

    config = asdict(TrainConfig())
    assert {k: config[k] for k in segment_cli.TRAIN_DEFAULTS} == segment_cli.TRAIN_DEFAULTS
    parser = argparse.ArgumentParser()
    segment_cli.register_cli(parser.add_subparsers(dest="group"))
    args = parser.parse_args(["segment", "train"])
    assert {k: getattr(args, k) for k in segment_cli.TRAIN_DEFAULTS} == segment_cli.TRAIN_DEFAULTS


def test_cli_module_imports_only_the_standard_library():
    import subprocess
    import sys

    code = ("import sys; import covid_lib.cli.segment; "
            "print(sorted(m for m in ('numpy', 'pandas', 'torch', 'covid_lib.segment') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(DEFAULT_WEIGHTS.parent.parent)).stdout.strip()
    assert out == "[]"


# ------------------------------------------------------------------------- committed weights
def test_committed_weights_are_small_and_recorded():
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("weights/unet_lungs.pt not trained yet")
    assert DEFAULT_WEIGHTS.stat().st_size < 5 * 2**20
    record = json.loads(RECORD.read_text())
    for key in ("command", "config", "data_version", "git_commit", "train_wall_seconds", "evaluation",
                "held_out_ids"):
        assert key in record
    assert record["evaluation"]["held_out"]["dice"]["mean"] >= 0.95
    model = load_unet()
    assert model.input_size == record["config"]["image_size"]


@pytest.mark.data
def test_committed_weights_segment_held_out_shenzhen(data_root):
    from covid_lib.data import load_source, read_image, read_mask

    if not RECORD.is_file():
        pytest.skip("weights/unet_lungs.pt not trained yet")
    held = set(json.loads(RECORD.read_text())["held_out_ids"])
    manifest = load_source("shenzhen", data_root, verify=False).manifest
    rows = manifest[manifest["image_id"].isin(held)].sort_values("image_id").head(3)
    assert len(rows) == 3
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = load_unet()
    recorded = pd.read_csv(DEFAULT_WEIGHTS.with_suffix(".scores.csv")).set_index("image_id")["dice"]
    dices = []
    for _, row in rows.iterrows():
        img, ref = read_image(row["image_path"]), read_mask(row["mask_path"])
        pred = predict_lung_mask(img, model)
        assert pred.shape == ref.shape
        dices.append(dice_iou(pred, ref)[0])
        assert dices[-1] == pytest.approx(recorded[row["image_id"]], abs=2e-3)  # the run record reproduces
        assert dices[-1] > 0.85, row["image_id"]  # 4 of 114 held-out Shenzhen images are under 0.9
        res = preprocess_image(img, get_pipeline("paper", image_size=128), model=model)
        assert res.image.shape == (128, 128) and res.image.min() == 0 and res.image.max() == 1
        # The output keeps the lungs and blacks out what is far from them.
        assert res.image[res.mask].mean() > 5 * res.image[:8, :8].mean() + 1e-6
    assert np.mean(dices) > 0.9


@pytest.mark.data
def test_chain_on_one_image_of_every_source(data_root):
    from covid_lib.data import SOURCES, load_source, read_image

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("weights/unet_lungs.pt not trained yet")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = load_unet()
    p = get_pipeline("paper", image_size=128)
    for name in SOURCES:
        row = load_source(name, data_root, verify=False, views="frontal").manifest.iloc[0]
        try:
            res = preprocess_image(read_image(row["image_path"]), p, model=model)
        except PreprocessError as err:  # allowed, but it must say why
            assert str(err)
            continue
        assert res.image.max() == 1.0 and 0.1 < res.mask.mean() < 0.8, name
