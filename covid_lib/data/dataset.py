"""Torch datasets over the pre-processing cache: arrays in memory, never PNGs per epoch.

Images come from :func:`covid_lib.preprocess.preprocess_source` (one cached ``.npz`` per source
and pipeline) and are held as ``uint8`` arrays; :class:`XrayDataset` turns them into tensors
with the paper code's transforms (Tartaglione et al. 2020; the paper's text names no
augmentation, their code does):

- centre crop from the cached side (``Resize 256``) to the network input (``CenterCrop 224``);
- training only: horizontal flip with p = 0.2, ``RandomAffine(degrees=1, translate=(0.1, 0.1),
  scale=(1, 1.1))`` (bilinear, zero fill);
- normalisation by the *training* images' mean and standard deviation.

Each item is ``(image 1xHxW float32, label int, group id str)``: the group is the patient group
of :func:`covid_lib.data.assign_splits`, for the patient-cluster bootstrap.

Example:
    >>> import numpy as np
    >>> imgs = np.random.default_rng(0).integers(0, 256, (4, 72, 72), dtype=np.uint8)
    >>> ds = XrayDataset(imgs, [0, 1, 0, 1], ["a", "b", "c", "d"], image_size=64, augment=True)
    >>> x, y, g = ds[1]
    >>> tuple(x.shape), y, g
    ((1, 64, 64), 1, 'b')
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

#: Labels of the pre-training tasks (paper Sec. III-C; code: three-class Kermany, binary RSNA).
PRETRAIN_LABELS: dict[str, tuple[str, dict]] = {
    "kermany": ("kermany_class", {"normal": 0, "bacteria": 1, "virus": 2}),
    "nih": ("pneumonia", {0: 0, 1: 1}),
}


@dataclass(frozen=True)
class Augment:
    """The paper code's training augmentation (see the module docstring)."""

    flip_p: float = 0.2
    degrees: float = 1.0
    translate: float = 0.1
    scale: tuple[float, float] = (1.0, 1.1)


def _random_affine(x: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Rotate, translate and scale a (1, H, W) image with torch's global RNG (bilinear, zero fill)."""
    r = torch.rand(4)
    angle = math.radians((2 * r[0].item() - 1) * aug.degrees)
    tx, ty = ((2 * r[1:3] - 1) * aug.translate * 2).tolist()  # grid units: 2 = full side
    s = aug.scale[0] + r[3].item() * (aug.scale[1] - aug.scale[0])
    cos, sin = math.cos(angle) / s, math.sin(angle) / s
    theta = torch.tensor([[cos, -sin, tx], [sin, cos, ty]], dtype=x.dtype)[None]
    grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window of a (..., H, W) tensor."""
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop {size} px is larger than the image ({h}x{w})")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


class XrayDataset(Dataset):
    """Pre-processed images with labels and patient groups.

    Args:
        images: ``uint8`` (N, S, S) arrays (the cache's [0, 1] output times 255).
        labels: N integer labels (COVID: 1 = COVID+).
        groups: N patient-group ids.
        image_size: network input side; images are centre-cropped to it.
        augment: apply :class:`Augment` (training sets only).
        mean, std: normalisation in [0, 1] units; default: this set's own statistics (pass the
            training set's to validation and test sets, see :meth:`stats`).
        aug: augmentation settings.
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int], groups: Sequence[str], *,
                 image_size: int, augment: bool = False, mean: float | None = None,
                 std: float | None = None, aug: Augment = Augment()):
        images = np.asarray(images)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, S, S), got {images.dtype} {images.shape}")
        if not len(images) == len(labels) == len(groups):
            raise ValueError(f"{len(images)} images, {len(labels)} labels, {len(groups)} groups")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.groups = [str(g) for g in groups]
        self.image_size, self.augment, self.aug = int(image_size), augment, aug
        center_crop(torch.zeros(images.shape[1:]), self.image_size)  # fail early on a bad size
        own_mean, own_std = self.stats()
        self.mean = own_mean if mean is None else float(mean)
        self.std = own_std if std is None else float(std)

    def stats(self) -> tuple[float, float]:
        """Mean and standard deviation of the centre crops, in [0, 1] units."""
        if len(self.images) == 0:
            return 0.0, 1.0
        crops = center_crop(torch.from_numpy(self.images), self.image_size).float() / 255
        return float(crops.mean()), max(float(crops.std()), 1e-6)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        x = center_crop(torch.from_numpy(self.images[i]).float()[None] / 255, self.image_size)
        if self.augment:
            if torch.rand(()).item() < self.aug.flip_p:
                x = x.flip(-1)
            x = _random_affine(x, self.aug)
        return (x - self.mean) / self.std, int(self.labels[i]), self.groups[i]


# ------------------------------------------------------------------------------- row selection
def limit_rows(rows: pd.DataFrame, max_images: int | None, *, seed: int = 0,
               by: Sequence[str] = ("source", "split"), label: str = "label") -> pd.DataFrame:
    """At most ``max_images`` rows per ``by`` cell (default: per source and split), stratified
    by ``label`` (every label keeps at least one row). ``None`` keeps everything."""
    if max_images is None:
        return rows
    parts = []
    for _, cell in rows.groupby(list(by), sort=False):
        if len(cell) <= max_images:
            parts.append(cell)
            continue
        share = cell[label].value_counts(normalize=True)
        for value, g in cell.groupby(label, sort=True):
            k = min(len(g), max(1, round(share[value] * max_images)))
            parts.append(g.sample(k, random_state=seed))
    return pd.concat(parts).loc[lambda d: ~d.index.duplicated()] if parts else rows.iloc[:0]


def pretrain_rows(source: str, data_root: str | os.PathLike | None = None, *, split_seed: int = 0) -> pd.DataFrame:
    """The pre-training set of ``source`` (``kermany`` = ChestXRay, ``nih`` = RSNA) with ``label``.

    Uses the global patient-level split (:func:`covid_lib.data.global_splits`), so images tested in
    any composition are never pre-trained on. Labels: Kermany three classes (normal, bacterial,
    viral), as in the paper's code; NIH pneumonia yes/no (the paper's RSNA pneumonia task).
    """
    from covid_lib.data import global_splits

    if source not in PRETRAIN_LABELS:
        raise ValueError(f"unknown pre-training source {source!r}; choose from {', '.join(PRETRAIN_LABELS)}")
    column, mapping = PRETRAIN_LABELS[source]
    rows = global_splits(data_root, seed=split_seed).query("source == @source").copy()
    rows["label"] = rows[column].map(lambda v: mapping.get(v if isinstance(v, str) else int(v)))
    return rows.dropna(subset=["label"]).astype({"label": int})


# ---------------------------------------------------------------------------------- image arrays
def _whole_source(source: str, ids: pd.Series, pipeline, data_root) -> dict[str, np.ndarray]:
    from covid_lib.preprocess import preprocess_source

    images, index, _ = preprocess_source(source, pipeline, data_root)
    pos = dict(zip(index["image_id"].astype(str), range(len(index))))
    return {i: images[pos[i]] for i in ids if i in pos}


def _subset(rows: pd.DataFrame, pipeline) -> dict[str, np.ndarray]:
    from covid_lib.preprocess import preprocess_rows

    images, index, _ = preprocess_rows(rows, pipeline)
    return dict(zip(index["image_id"].astype(str), images))


def load_images(rows: pd.DataFrame, pipeline, data_root: str | os.PathLike | None = None, *,
                whole_sources: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """Pre-processed images for ``rows`` (from :func:`covid_lib.data.compose` or
    :func:`pretrain_rows`), in row order.

    Args:
        rows: rows with ``source``, ``image_id`` (and ``image_path`` when ``whole_sources=False``).
        pipeline: a :class:`covid_lib.preprocess.Pipeline` (its ``image_size`` is the cached side).
        whole_sources: read each source's cached arrays (:func:`preprocess_source`: the whole
            source is processed once, then reused). ``False`` runs the chain on these rows only,
            uncached: for small subsets (the smoke profile), where a whole source would cost more.

    Returns:
        ``(images uint8 (N, S, S), kept rows)``: rows the chain rejected (e.g. a fragmented lung
        mask, listed by :func:`preprocess_source`) are dropped; ``kept`` says which remain.
    """
    from covid_lib.preprocess import get_pipeline

    pipeline = get_pipeline(pipeline).resolved()
    found: dict[tuple[str, str], np.ndarray] = {}
    for source, part in rows.groupby("source", sort=True):
        ids = part["image_id"].astype(str)
        arrays = _whole_source(source, ids, pipeline, data_root) if whole_sources else _subset(part, pipeline)
        found.update({(source, i): a for i, a in arrays.items()})
    keys = list(zip(rows["source"], rows["image_id"].astype(str)))
    keep = np.array([k in found for k in keys], dtype=bool)
    kept = rows[keep]
    side = pipeline.image_size
    images = np.stack([found[k] for k, ok in zip(keys, keep) if ok]) if keep.any() else np.zeros((0, side, side), np.uint8)
    return images, kept


def make_dataset(rows: pd.DataFrame, images: np.ndarray, *, image_size: int, augment: bool = False,
                 mean: float | None = None, std: float | None = None) -> XrayDataset:
    """An :class:`XrayDataset` from rows (``label``, ``group_id``) and their images."""
    return XrayDataset(images, rows["label"].to_numpy(), rows["group_id"].astype(str).to_numpy(),
                       image_size=image_size, augment=augment, mean=mean, std=std)
