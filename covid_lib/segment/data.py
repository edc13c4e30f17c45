"""The segmentation data (Sec. III-B): Montgomery + Shenzhen with manual masks, split by patient;
Cohen's COVID-19 images with V7 masks out of domain; the U-Net's input arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from covid_lib.data import assign_splits, data_version, load_source, read_image
from covid_lib.preprocess import resize, segmenter_input

SEG_SOURCES = ("montgomery", "shenzhen")


def segmentation_manifest(data_root=None, *, seed: int = 0, test_fraction: float = 0.2,
                          val_fraction: float = 0.15) -> pd.DataFrame:
    """Montgomery + Shenzhen rows with masks and a patient-level ``split`` (train/val/test)."""
    frames = [load_source(name, data_root).manifest for name in SEG_SOURCES]
    manifest = pd.concat(frames, ignore_index=True)
    manifest = manifest[manifest["mask_path"].notna()].reset_index(drop=True)
    return assign_splits(manifest, seed=seed, test_fraction=test_fraction, val_fraction=val_fraction)


def manifests_version(data_root=None, sources=SEG_SOURCES) -> str:
    """The data version (:func:`covid_lib.data.data_version`) of the U-Net's training sources."""
    return data_version(data_root, sources=list(sources))


def load_arrays(manifest: pd.DataFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs (N, size, size) float32 and soft targets (N, size, size) float32 in [0, 1]."""
    xs = np.empty((len(manifest), size, size), np.float32)
    ys = np.empty_like(xs)
    for i, (img_path, mask_path) in enumerate(zip(manifest["image_path"], manifest["mask_path"])):
        img = read_image(img_path)
        mask = (read_image(mask_path) > 127).astype(np.float32)
        xs[i] = segmenter_input(img, size)
        ys[i] = resize(mask, (size, size))
    return xs, ys



def cohen_manifest(data_root=None, *, frontal_only: bool = True) -> pd.DataFrame:
    """Cohen COVID-19 (covid == 1) images with V7 lung masks (frontal views by default)."""
    m = load_source("cohen", data_root).manifest
    m = m[m["mask_path"].notna() & (m["covid"] == 1)]
    if frontal_only:
        m = m[m["frontal"]]
    return m.reset_index(drop=True)
