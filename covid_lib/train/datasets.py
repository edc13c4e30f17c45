"""Torch datasets over the pre-processing cache, with the paper code's augmentation done per batch.

Images come from :func:`covid_lib.preprocess.preprocess_source` (one cached array per source and
pipeline) and are held in memory as ``uint8`` centre crops: nothing is read from disk per epoch,
so no data-loader workers are needed (on CUDA the crops are pinned and copied without blocking).
The transforms follow Tartaglione et al. 2020's code (their text names no augmentation):

- centre crop from the cached side (``Resize 256``) to the network input (``CenterCrop 224``);
- training only: horizontal flip with p = 0.2, then ``RandomAffine(degrees=1, translate=(0.1,
  0.1), scale=(1, 1.1))`` (bilinear, zero fill), drawn per image but applied to the whole batch
  with one ``affine_grid`` / ``grid_sample`` call (:func:`augment_batch`; the flip is folded into
  the affine matrix);
- normalisation by the *training* images' mean and standard deviation.

Each item is ``(image 1xHxW float32, label int, group id str)``; the group is the patient group
of :func:`covid_lib.data.assign_splits`, for the patient-cluster bootstrap.

Example:
    >>> import numpy as np, torch
    >>> imgs = np.random.default_rng(0).integers(0, 256, (4, 72, 72), dtype=np.uint8)
    >>> ds = XrayDataset(imgs, [0, 1, 0, 1], ["a", "b", "c", "d"], input_size=64, augment=True)
    >>> x, y, g = ds[1]
    >>> tuple(x.shape), y, g
    ((1, 64, 64), 1, 'b')
    >>> xb, yb, idx = next(ds.batches(3, shuffle=True, generator=torch.Generator().manual_seed(0)))
    >>> tuple(xb.shape), len(yb)
    ((3, 1, 64, 64), 3)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from covid_lib.preprocess import get_pipeline, preprocess_rows, preprocess_source


@dataclass(frozen=True)
class Augment:
    """The paper code's training augmentation (see the module docstring)."""

    flip_p: float = 0.2
    degrees: float = 1.0
    translate: float = 0.1
    scale: tuple[float, float] = (1.0, 1.1)


def affine_matrices(n: int, aug: Augment, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` random (2, 3) sampling matrices in ``affine_grid`` units: flip, rotate, translate, scale.

    A flipped image is sampled at mirrored x, so the flip is the first row's sign.
    """
    r = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    angle = (2 * r[:, 0] - 1) * math.radians(aug.degrees)
    tx, ty = ((2 * r[:, 1:3] - 1) * aug.translate * 2).unbind(1)  # grid units: 2 = the full side
    s = aug.scale[0] + r[:, 3] * (aug.scale[1] - aug.scale[0])
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    flip = r[:, 4] < aug.flip_p
    theta[flip, 0] *= -1
    return theta.float()


def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip + random affine of a (B, 1, H, W) batch in one ``grid_sample`` call (bilinear, zero fill).

    Random draws come from ``generator`` on the CPU, so a seed gives the same batch on any device.
    """
    theta = affine_matrices(len(x), aug, generator).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


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
        input_size: network input side; images are centre-cropped to it.
        augment: apply :class:`Augment` in :meth:`batches` and ``__getitem__`` (training sets only).
        mean, std: normalisation in [0, 1] units; default: this set's own statistics (pass the
            training set's to validation and test sets).
        aug: augmentation settings.
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int], groups: Sequence[str], *,
                 input_size: int, augment: bool = False, mean: float | None = None,
                 std: float | None = None, aug: Augment = Augment()):
        images = np.asarray(images)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, S, S), got {images.dtype} {images.shape}")
        if not len(images) == len(labels) == len(groups):
            raise ValueError(f"{len(images)} images, {len(labels)} labels, {len(groups)} groups")
        self.labels = np.array(labels, dtype=np.int64)  # a writable copy
        self.groups = [str(g) for g in groups]
        self.input_size, self.augment, self.aug = int(input_size), augment, aug
        #: uint8 (N, 1, s, s) centre crops, contiguous: a batch is one indexing operation.
        self.crops = center_crop(torch.from_numpy(images), self.input_size)[:, None].contiguous()
        own_mean, own_std = self.stats()
        self.mean = own_mean if mean is None else float(mean)
        self.std = own_std if std is None else float(std)

    @property
    def images(self) -> np.ndarray:
        """The centre crops as uint8 (N, s, s)."""
        return self.crops[:, 0].numpy()

    def stats(self) -> tuple[float, float]:
        """Mean and standard deviation of the centre crops, in [0, 1] units."""
        if len(self.crops) == 0:
            return 0.0, 1.0
        crops = self.crops.float() / 255
        return float(crops.mean()), max(float(crops.std()), 1e-6)

    def __len__(self) -> int:
        return len(self.crops)

    def _prepare(self, raw: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = raw.float() / 255
        if self.augment:
            x = augment_batch(x, self.aug, generator)
        return (x - self.mean) / self.std

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        return self._prepare(self.crops[i:i + 1], None)[0], int(self.labels[i]), self.groups[i]

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                device: str | torch.device = "cpu", drop_single: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y, index)`` batches on ``device``: normalised, augmented when the set is.

        Args:
            batch_size: images per batch.
            shuffle: draw a new order from ``generator`` (seeded: the same order on every device).
            generator: CPU generator for the order and the augmentation.
            device: where the batches go (CUDA: pinned memory, non-blocking copies).
            drop_single: skip a last batch of one image (batch norm cannot train on it).
        """
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        labels = torch.from_numpy(self.labels)
        cuda = torch.device(device).type == "cuda"
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if drop_single and len(idx) == 1 and n > 1:
                continue
            raw, y = self.crops[idx], labels[idx]
            if cuda:
                raw, y = raw.pin_memory(), y.pin_memory()
            raw, y = raw.to(device, non_blocking=True), y.to(device, non_blocking=True)
            yield self._prepare(raw, generator), y, idx


# ---------------------------------------------------------------------------------- image arrays
def _whole_source(source: str, ids: pd.Series, pipeline, data_root) -> dict[str, np.ndarray]:
    images, index, _ = preprocess_source(source, pipeline, data_root)
    pos = dict(zip(index["image_id"].astype(str), range(len(index))))
    return {i: images[pos[i]] for i in ids if i in pos}


def _subset(rows: pd.DataFrame, pipeline) -> dict[str, np.ndarray]:
    images, index, _ = preprocess_rows(rows, pipeline)
    return dict(zip(index["image_id"].astype(str), images))


def load_images(rows: pd.DataFrame, pipeline, data_root: str | os.PathLike | None = None, *,
                whole_sources: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """Pre-processed images for ``rows`` (from :func:`covid_lib.data.compose` or
    :func:`covid_lib.data.pretrain_rows`), in row order.

    Args:
        rows: rows with ``source``, ``image_id`` (and ``image_path`` when ``whole_sources=False``).
        pipeline: a :class:`covid_lib.preprocess.Pipeline` (its ``image_size`` is the cached side).
        whole_sources: read each source's cached arrays (:func:`preprocess_source`: the whole
            source is processed once, then reused). ``False`` runs the chain on these rows only,
            uncached: for small subsets (the smoke profile), where a whole source would cost more.

    Returns:
        ``(images uint8 (N, S, S), kept rows)``: rows the chain rejected (e.g. a fragmented lung
        mask, listed by :func:`preprocess_source`) are dropped; ``kept`` says which remain, and
        ``rows`` minus ``kept`` are the rejections a record must report.
    """
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


def make_dataset(rows: pd.DataFrame, images: np.ndarray, *, input_size: int, augment: bool = False,
                 mean: float | None = None, std: float | None = None) -> XrayDataset:
    """An :class:`XrayDataset` from rows (``label``, ``group_id``) and their images."""
    return XrayDataset(images, rows["label"].to_numpy(), rows["group_id"].astype(str).to_numpy(),
                       input_size=input_size, augment=augment, mean=mean, std=std)
