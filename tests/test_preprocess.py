"""Pre-processing steps on synthetic images with known answers, the chain, its cache, bad inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from covid_lib import preprocess as pp
from covid_lib.preprocess import (
    Pipeline,
    PreprocessError,
    apply_mask,
    blur_mask,
    check_image,
    check_mask,
    clean_mask,
    crop_to_lungs,
    equalize,
    fit_square,
    get_pipeline,
    lung_bbox,
    normalize01,
    preprocess_image,
    preprocess_source,
)


def _chest(size=128, seed=0) -> np.ndarray:
    """A synthetic 'chest': bright body, two dark lungs, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = 170 + 30 * yy + rng.normal(0, 6, (size, size))
    for cx in (0.3, 0.7):
        img[((xx - cx) / 0.14) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1] -= 100
    return img.clip(0, 255).astype(np.uint8)


def _two_lungs(size=128) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / size
    return (((xx - 0.3) / 0.14) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1) | (((xx - 0.7) / 0.14) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1)


class FixedModel(torch.nn.Module):
    """Stands in for the U-Net: returns the logits of a fixed mask, whatever the input."""

    input_size = 64

    def __init__(self, mask: np.ndarray):
        super().__init__()
        self.logits = torch.from_numpy(np.where(mask, 10.0, -10.0).astype(np.float32))

    def forward(self, x):
        return self.logits.expand(x.shape[0], 1, *self.logits.shape).clone()


# ------------------------------------------------------------------------------- equalisation
def test_equalize_linear_ramp_gives_uniform_histogram():
    ramp = np.tile(np.linspace(50, 100, 51).round().astype(np.uint8), (40, 1))  # 51 levels, equal counts
    eq = equalize(ramp, "global")
    assert eq.dtype == np.uint8 and eq.shape == ramp.shape
    assert eq.max() == 255 and eq.min() <= 10
    counts, _ = np.histogram(eq, bins=8, range=(0, 256))
    assert counts.min() / counts.max() > 0.8  # ~uniform over the full range
    assert np.all(np.diff(eq[0].astype(int)) > 0)  # monotone: order of grey levels kept


def test_equalize_skewed_image_flattens_histogram():
    rng = np.random.default_rng(1)
    img = (rng.beta(2, 8, (128, 128)) * 255).astype(np.uint8)  # dark-skewed
    eq = equalize(img)
    counts, _ = np.histogram(eq, bins=4, range=(0, 256))
    assert counts.min() / counts.max() > 0.8
    assert abs(eq.mean() - 127.5) < 8


def test_equalize_clahe_and_none():
    img = _chest()
    clahe = equalize(img, "clahe")
    assert clahe.dtype == np.uint8 and clahe.shape == img.shape
    assert np.ptp(clahe) > np.ptp(img)
    assert np.array_equal(equalize(img, "none"), img)
    with pytest.raises(ValueError, match="equalization must be one of"):
        equalize(img, "gamma")


# ------------------------------------------------------------------------------------- masks
def test_clean_mask_keeps_two_largest_and_fills_holes():
    m = np.zeros((64, 64), bool)
    m[5:30, 5:25] = True
    m[5:30, 35:60] = True
    m[15:18, 15:18] = False  # a hole
    m[50:52, 50:52] = True  # a speck
    out, kept = clean_mask(m)
    assert out[16, 16] and not out[51, 51]
    assert out.sum() == 25 * 20 + 25 * 25
    assert kept == pytest.approx((m.sum() - 4) / m.sum())
    empty, kept_empty = clean_mask(np.zeros((8, 8), bool))
    assert not empty.any() and kept_empty == 1.0


def test_check_mask_rules():
    lungs = _two_lungs()
    assert check_mask(lungs) is lungs
    with pytest.raises(PreprocessError, match="empty lung mask") as err:
        check_mask(np.zeros_like(lungs))
    assert err.value.step == "mask"
    with pytest.raises(PreprocessError, match="fragmented"):
        check_mask(lungs, kept_fraction=0.5)
    tiny = np.zeros_like(lungs)
    tiny[60:64, 60:64] = True
    with pytest.raises(PreprocessError, match="too small"):
        check_mask(tiny)
    with pytest.raises(PreprocessError, match="too large"):
        check_mask(np.ones_like(lungs))


def test_blur_of_square_has_gaussian_edge_profile():
    mask = np.zeros((128, 128), bool)
    mask[32:96, 32:96] = True
    sigma = 3.0
    out = blur_mask(mask, radius_px=sigma)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert out[64, 64] == pytest.approx(1.0, abs=1e-6)
    assert out[64, 0] == pytest.approx(0.0, abs=1e-6)
    # The edge lies between pixels 31 and 32: the profile is Phi((i - 31.5) / sigma).
    for i in range(20, 45):
        expected = 0.5 * (1 + math.erf((i - 31.5) / (sigma * math.sqrt(2))))
        assert out[64, i] == pytest.approx(expected, abs=0.02), i
    # Mass is conserved away from the borders (blurring only moves it).
    assert out.sum() == pytest.approx(mask.sum(), rel=1e-3)


def test_blur_radius_is_taken_at_the_given_size():
    mask = np.zeros((256, 256), bool)
    mask[64:192, 64:192] = True
    # 3 px measured at 128 px are 6 px at 256 px.
    np.testing.assert_allclose(blur_mask(mask, 3, at_size=128), blur_mask(mask, 6), atol=1e-6)
    np.testing.assert_array_equal(blur_mask(mask, 0), mask.astype(np.float32))
    with pytest.raises(ValueError):
        blur_mask(mask, -1)


def test_lung_bbox_and_crop():
    mask = np.zeros((100, 80), bool)
    mask[10:90, 5:75] = True
    mask[50, 40] = False
    assert lung_bbox(mask) == (10, 90, 5, 75)
    img = np.arange(8000, dtype=np.uint8).reshape(100, 80)
    cimg, cmask, bbox = crop_to_lungs(img, mask)
    assert cimg.shape == cmask.shape == (80, 70) and bbox == (10, 90, 5, 75)
    np.testing.assert_array_equal(cimg, img[10:90, 5:75])


def test_crop_rejection_rules():
    img = np.zeros((100, 100), np.uint8)
    narrow = np.zeros((100, 100), bool)
    narrow[20:80, 20:60] = True  # 60% of the height, 40% of the width, 24% of the area
    with pytest.raises(PreprocessError, match="60% of the image height and 40% of its width") as err:
        crop_to_lungs(img, narrow)
    assert err.value.step == "crop"
    with pytest.raises(PreprocessError, match="empty lung mask"):
        crop_to_lungs(img, np.zeros((100, 100), bool))
    half = np.zeros((100, 100), bool)
    half[20:80, 25:75] = True  # 60% x 50%: kept by the per-side rule, rejected by area (30%)
    assert crop_to_lungs(img, half)[0].shape == (60, 50)
    with pytest.raises(PreprocessError, match="covers 30% of the image area"):
        crop_to_lungs(img, half, rule="area")
    with pytest.raises(ValueError, match="rule"):
        crop_to_lungs(img, half, rule="volume")


def test_apply_mask_and_normalize01():
    img = np.full((8, 8), 200, np.uint8)
    img[0, 0] = 10
    out = normalize01(apply_mask(img, np.full((8, 8), 0.5)))
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        apply_mask(img, np.ones((4, 4)))
    with pytest.raises(PreprocessError, match="constant image"):
        normalize01(np.zeros((8, 8)))


def test_fit_square_modes():
    img = np.full((60, 120), 100, np.uint8)
    padded = fit_square(img, 64, "pad")
    assert padded.shape == (64, 64)
    assert padded[0, 32] == 0 and padded[32, 32] == 100  # bars above and below, content centred
    assert fit_square(img, 64, "squash").shape == (64, 64)
    assert (fit_square(img, 64, "center_crop") == 100).all()
    with pytest.raises(ValueError, match="fit must be one of"):
        fit_square(img, 64, "stretch")


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("img", "match"),
    [
        (np.zeros((64, 64), np.uint8), "blank or uniform"),
        (np.full((64, 64), 255, np.uint8), "blank or uniform"),
        (np.random.default_rng(0).integers(0, 255, (16, 64)).astype(np.uint8), "too small"),
        (np.zeros((64, 64, 3), np.uint8), "2-D grayscale"),
        (np.full((64, 64), np.nan), "NaN"),
    ],
)
def test_check_image_rejects_bad_input(img, match):
    with pytest.raises(PreprocessError, match=match):
        check_image(img)
    with pytest.raises(PreprocessError, match=match):
        preprocess_image(img, get_pipeline("equalize", image_size=32))


def test_chain_rejects_empty_and_fragmented_predictions():
    img = _chest()
    p = get_pipeline("paper", image_size=64, weights_hash="test")
    with pytest.raises(PreprocessError, match="empty lung mask"):
        preprocess_image(img, p, model=FixedModel(np.zeros((64, 64), bool)))
    speckles = np.zeros((64, 64), bool)
    speckles[::4, ::4] = True
    with pytest.raises(PreprocessError, match="fragmented"):
        preprocess_image(img, p, model=FixedModel(speckles))


def test_chain_output_with_a_known_mask():
    img = _chest()
    p = get_pipeline("paper", image_size=64, weights_hash="test")
    res = preprocess_image(img, p, model=FixedModel(_two_lungs(64)))
    assert res.image.shape == (64, 64) and res.image.dtype == np.float32
    assert res.image.min() == 0.0 and res.image.max() == 1.0
    assert res.mask.shape == (64, 64) and 0.15 < res.mask.mean() < 0.35
    # Far outside the lungs the image is black; inside the lungs it is not.
    assert res.image[2, 2] == 0 and res.image[~res.mask].mean() < res.image[res.mask].mean()
    cropped = preprocess_image(img, get_pipeline("paper_crop", image_size=64, weights_hash="t"),
                               model=FixedModel(_two_lungs(64)))
    assert cropped.info["bbox"] and cropped.mask.mean() > res.mask.mean()


# -------------------------------------------------------------------------------- pipeline
def test_pipeline_hash_is_stable_and_ignores_the_name():
    p = get_pipeline("equalize", image_size=128)
    assert p.hash == Pipeline("equalize", image_size=128, mask=False).hash
    assert p.hash == get_pipeline(p, name="another name").hash
    assert p.hash != get_pipeline(p, image_size=64).hash
    assert p.hash != get_pipeline(p, equalization="clahe").hash
    assert len(p.hash) == 12 and int(p.hash, 16) >= 0
    with_model = get_pipeline("paper", weights_hash="abc")
    assert with_model.hash != get_pipeline(with_model, weights_hash="abd").hash
    with pytest.raises(ValueError, match="unknown pipeline"):
        get_pipeline("nope")
    with pytest.raises(ValueError, match="equalization"):
        Pipeline(equalization="x")


def test_pipeline_hash_is_the_same_in_another_process():
    import subprocess
    import sys

    code = ("from covid_lib.preprocess import get_pipeline; "
            "print(get_pipeline('equalize', image_size=128).hash)")
    env = {**__import__("os").environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(pp.__file__).parents[2], check=True).stdout.strip()
    assert out == get_pipeline("equalize", image_size=128).hash


def test_pipeline_hash_reads_the_weights_file(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    h1 = Pipeline(weights=str(weights)).hash
    weights.write_bytes(b"two")
    assert Pipeline(weights=str(weights)).hash != h1
    with pytest.raises(FileNotFoundError, match="segment train"):
        Pipeline(weights=str(tmp_path / "missing.pt")).hash


# ------------------------------------------------------------------------------------ cache
def _fake_root(tmp_path: Path, n_good: int = 4) -> Path:
    """A data root with a small 'montgomery' source: good images, a uniform one, a corrupt one."""
    folder = tmp_path / "data" / "montgomery"
    (folder / "images").mkdir(parents=True)
    rows = []
    pixels = {f"good{i}": _chest(96, seed=i) for i in range(n_good)}
    pixels["uniform"] = np.full((96, 96), 128, np.uint8)
    for image_id, arr in pixels.items():
        Image.fromarray(arr).save(folder / "images" / f"{image_id}.png")
    (folder / "images" / "corrupt.png").write_bytes(b"not a png at all")
    for i, image_id in enumerate([*pixels, "corrupt"]):
        rows.append({"image_id": image_id, "path": f"images/{image_id}.png", "mask_path": "",
                     "patient_id": f"montgomery:{i}", "source": "montgomery", "tb": "0", "view": "PA",
                     "license": "test", "origin": "synthetic", "orig_width": 96, "orig_height": 96,
                     "orig_mode": "L", "orig_format": "PNG", "width": 96, "height": 96})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return tmp_path / "data"


def test_preprocess_source_caches_and_reports_rejections(tmp_path, monkeypatch):
    root = _fake_root(tmp_path)
    calls = []
    real = pp.cache._compute_source
    monkeypatch.setattr(pp.cache, "_compute_source", lambda *a, **k: calls.append(1) or real(*a, **k))
    p = get_pipeline("equalize", image_size=32)
    images, index, rejections = preprocess_source("montgomery", p, root)
    assert len(calls) == 1
    assert images.shape == (4, 32, 32) and images.dtype == np.uint8
    assert list(index["image_id"]) == [f"good{i}" for i in range(4)]
    assert index["tb"].tolist() == [0, 0, 0, 0] and "image_path" in index
    reasons = dict(zip(rejections["image_id"], rejections["reason"]))
    assert set(reasons) == {"uniform", "corrupt"}
    assert "blank or uniform" in reasons["uniform"] and "unreadable" in reasons["corrupt"]
    assert all(images[i].max() == 255 and images[i].min() == 0 for i in range(4))

    again, index2, rejections2, masks = preprocess_source("montgomery", p, root, return_masks=True)
    assert len(calls) == 1  # read from the cache, not recomputed
    np.testing.assert_array_equal(again, images)
    pd.testing.assert_frame_equal(index2, index)
    pd.testing.assert_frame_equal(rejections2, rejections)
    assert masks.shape == images.shape and masks.all()
    assert pp.cache_path("montgomery", p, root).is_file()
    assert pp.cache_path("montgomery", p, root).parent.name == p.hash

    preprocess_source("montgomery", get_pipeline(p, image_size=48), root)
    assert len(calls) == 2  # another pipeline, another cache entry
    preprocess_source("montgomery", p, root, refresh=True)
    assert len(calls) == 3


def test_preprocess_source_with_a_model_never_drops_silently(tmp_path):
    from covid_lib.models import create_model
    from covid_lib.models.weights import save_unet

    root = _fake_root(tmp_path, n_good=3)
    torch.manual_seed(0)
    weights = save_unet(create_model("unet", base_channels=4, depth=2), tmp_path / "w.pt", input_size=32)
    p = get_pipeline("paper", image_size=32, weights=str(weights))
    images, index, rejections, masks = preprocess_source("montgomery", p, root, return_masks=True)
    assert len(index) + len(rejections) == 5
    assert set(index["image_id"]).isdisjoint(rejections["image_id"])
    assert rejections["reason"].str.len().gt(0).all()
    for img in images:  # whatever got through is a real image, not a black one
        assert img.max() == 255


def test_preprocess_rows_runs_the_chain_on_a_subset_without_caching(tmp_path, monkeypatch):
    from covid_lib.data import load_source

    monkeypatch.setenv("COVID_LIB_CACHE", str(tmp_path / "cache"))  # not the session's shared cache
    root = _fake_root(tmp_path)
    p = get_pipeline("equalize", image_size=32)
    manifest = load_source("montgomery", root).manifest
    subset = manifest[manifest["image_id"].isin(["good1", "good3"])]
    images, index, rejections = pp.preprocess_rows(subset, p)
    assert list(index["image_id"]) == ["good1", "good3"] and len(rejections) == 0
    assert not pp.cache_path("montgomery", p, root).exists()  # nothing cached
    full, full_index, _ = preprocess_source("montgomery", p, root)
    pos = [list(full_index["image_id"]).index(i) for i in ("good1", "good3")]
    np.testing.assert_array_equal(images, full[pos])


# ------------------------------------------------------------------------- batches and layers
def test_iter_image_batches_reads_checks_and_runs_the_model_once_per_batch():
    from covid_lib.preprocess import iter_image_batches

    class CountingNet(torch.nn.Module):
        input_size = 32

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return torch.zeros(x.shape[0], 1, 32, 32)

    pixels = {"a": _chest(64, 1), "b": np.full((64, 64), 7, np.uint8), "c": _chest(64, 2)}
    records = [{"image_id": k, "image_path": k} for k in ("a", "b", "c")]
    net = CountingNet()
    batches = list(iter_image_batches(records, net, read=pixels.__getitem__, catch=(PreprocessError,),
                                      batch_size=2))
    assert [b.done for b in batches] == [2, 3] and net.calls == 2
    assert [r["image_id"] for r in batches[0].records] == ["a"]
    (failed, err), = batches[0].failed
    assert failed["image_id"] == "b" and "uniform" in str(err)
    assert batches[1].probs.shape == (1, 32, 32)
    assert np.allclose(batches[1].probs, 0.5)  # sigmoid(0)
    no_model = list(iter_image_batches(records, read=pixels.__getitem__, check=False))
    assert len(no_model[0].images) == 3 and no_model[0].probs is None
    assert [p for _, _, p in no_model[0].items()] == [None] * 3
    with pytest.raises(PreprocessError):
        list(iter_image_batches(records, read=pixels.__getitem__))


def test_cache_key_of_a_mask_free_pipeline_is_pinned():
    # Changing it would orphan every cached source: bump deliberately, never by a refactoring.
    assert get_pipeline("equalize", image_size=128).hash == "ee2f2e2fe9b0"
    assert get_pipeline("none", image_size=256).hash == "1648cbdf350e"


def test_layers_models_below_preprocess_below_segment():
    """models.weights imports no data/preprocess/segment; preprocess imports no segment (not even
    inside a function): the import cycle of the U-Net loading stays broken."""
    import re

    root = Path(pp.__file__).parents[1]
    rules = {root / "models": r"covid_lib\.(data|preprocess|segment|train|evaluate|report)",
             root / "preprocess": r"covid_lib\.(segment|train|evaluate|runs|report|book|cli)"}
    for folder, pattern in rules.items():
        for path in folder.glob("*.py"):
            imports = re.findall(r"^\s*(?:from|import)\s+(\S+)", path.read_text(), flags=re.M)
            assert not [m for m in imports if re.match(pattern, m)], path
