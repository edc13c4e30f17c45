"""Where a classifier looks: CAM and Grad-CAM maps and the share of their mass inside the lungs.

DeGrave et al. (2021) found the saliency of COVID-19 classifiers outside the lungs; Ben Ahmed et
al. (2021, Sec. "Results", fine-tuning) applied Grad-CAM and called the result inconclusive; the
KTH report (Sec. 3.4) shows class activation maps (CAM, Zhou et al. 2016). This module turns a map
into a number: the **in-lung share**, the fraction of a map's (non-negative) mass that falls inside
the U-Net lung mask, beside the share a uniform map would get (the lung's share of the image).

- :func:`saliency_maps`: maps of the COVID+ log-odds (logit of COVID+ minus that of COVID-: a
  single logit of a two-class softmax is defined only up to a shift shared by both, and on our
  models the COVID+ logit alone often has no positive evidence anywhere) at the model input's
  resolution, non-negative: ``cam`` (the fc weights of the class times the last feature maps: ours, a few
  lines), ``gradcam`` and ``hirescam`` (the ``grad-cam`` package, ``pytorch_grad_cam``, without
  its per-image min-max rescaling, which would shift the zero of the map and change its shares).
  For a global-average-pool + linear head the three agree up to a positive factor (Grad-CAM's
  weights are the fc weights over the map's area).
- :func:`lung_masks`: the paper chain's binary lung mask of each image, in the geometry of the
  model input (fitted to the profile's ``resize_size`` like the images, then centre-cropped to
  ``input_size`` as :class:`covid_lib.train.XrayDataset` does), also for runs whose pipeline does
  not mask (``none``).
- :func:`in_lung_share`, :func:`share_summary`: per-image shares and their means with a
  patient-cluster bootstrap (:mod:`covid_lib.stats`).
- :func:`model_saliency`: all of it for a finished run on given rows.

Example:
    >>> import numpy as np
    >>> m = np.zeros((1, 4, 4)); m[0, :2] = 1.0   # all mass in the top half
    >>> lungs = np.zeros((1, 4, 4), bool); lungs[0, :2, :2] = True
    >>> float(in_lung_share(m, lungs)[0]), float(lungs[0].mean())
    (0.5, 0.25)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from covid_lib import stats
from covid_lib.preprocess import get_pipeline, preprocess_rows, preprocess_source
from covid_lib.runs import load_model
from covid_lib.runs.execution import rows_dataset
from covid_lib.train.datasets import center_crop

METHODS = ("cam", "gradcam", "hirescam")
COVID_CLASS = 1


# ------------------------------------------------------------------------------------------ maps
def target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose output is the last feature map (what the global pool averages):
    ``layer4`` of a timm ResNet, ``features`` of Conv8."""
    for name in ("layer4", "features"):
        if hasattr(model, name):
            return getattr(model, name)
    raise ValueError(f"no known last feature layer on {type(model).__name__}")


def upsample(maps: torch.Tensor | np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(N, h, w) maps to (N, H, W), bilinear (``align_corners=False``: pixel centres as
    ``F.interpolate`` and ``affine_grid`` use them); non-negative maps stay non-negative."""
    t = torch.as_tensor(np.asarray(maps, dtype=np.float32))[:, None]
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def class_activation_maps(model: torch.nn.Module, x: torch.Tensor, class_index: int = COVID_CLASS, *,
                          relu: bool = True, contrast: bool = True) -> np.ndarray:
    """Classic CAM (Zhou et al. 2016; the KTH report's Eq.): ``sum_k w_{c,k} f_k`` with ``w`` the
    linear head's weights and ``f`` the last feature maps, at feature resolution (N, h, w).
    ``contrast``: for a two-class head, the weights of ``logit_c - logit_other`` (the log-odds of
    class ``c``; a single logit of a softmax pair is defined only up to a shared shift)."""
    model = model.eval()
    with torch.no_grad():
        feats = model.forward_features(x).float()
        weight = model.get_classifier().weight.float()
        w = weight[class_index] - weight[1 - class_index] if contrast and len(weight) == 2 else weight[class_index]
        cam = torch.einsum("k,nkhw->nhw", w, feats)
    cam = cam.cpu().numpy()
    return np.maximum(cam, 0) if relu else cam


def _package_class(method: str):
    import pytorch_grad_cam as pgc

    base = {"gradcam": pgc.GradCAM, "hirescam": pgc.HiResCAM}[method]

    class Raw(base):
        """The package's map before its min-max rescaling and resizing (feature resolution)."""

        relu = True

        def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
            acts = [a.cpu().data.numpy() for a in self.activations_and_grads.activations]
            grads = [g.cpu().data.numpy() for g in self.activations_and_grads.gradients]
            out = [self.get_cam_image(input_tensor, layer, targets, acts[i], grads[i], eigen_smooth)
                   for i, layer in enumerate(self.target_layers)]
            return [np.maximum(c, 0) if self.relu else c for c in out]

        def aggregate_multi_layers(self, cams):
            return np.mean(np.stack(cams, 1), 1)

    return Raw


class _LogOdds:
    """Target ``logit_c - logit_other`` of one output row (the log-odds of class ``c``)."""

    def __init__(self, c: int) -> None:
        self.c = c

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        return out[..., self.c] - out[..., 1 - self.c]


def package_maps(model: torch.nn.Module, x: torch.Tensor, method: str = "gradcam",
                 class_index: int = COVID_CLASS, *, relu: bool = True, contrast: bool = True) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) or HiResCAM of ``pytorch_grad_cam`` for the class's
    log-odds (``contrast``, two-class heads) or its logit, at feature resolution (N, h, w),
    without the package's per-image rescaling."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = _package_class(method)
    two = model.get_classifier().weight.shape[0] == 2
    target = _LogOdds(class_index) if contrast and two else ClassifierOutputTarget(class_index)
    with torch.enable_grad(), cls(model=model.eval(), target_layers=[target_layer(model)]) as cam:
        cam.relu = relu
        return cam(input_tensor=x, targets=[target] * len(x))


def saliency_maps(model: torch.nn.Module, x: torch.Tensor, method: str = "gradcam",
                  class_index: int = COVID_CLASS) -> np.ndarray:
    """Non-negative maps (N, H, W) at the input's resolution of the log-odds of ``class_index``
    (COVID+ against COVID-)."""
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose from {', '.join(METHODS)}")
    raw = class_activation_maps(model, x, class_index) if method == "cam" else \
        package_maps(model, x, method, class_index)
    return upsample(raw, tuple(x.shape[-2:]))


# ------------------------------------------------------------------------------------- lung share
def in_lung_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's mass inside its mask (N,); NaN where a map has no mass (all zero)."""
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
    if (maps < 0).any():
        raise ValueError("saliency maps must be non-negative")
    total = maps.sum(axis=(1, 2))
    inside = (maps * masks).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def lung_area_share(masks: np.ndarray) -> np.ndarray:
    """The uniform baseline: the lung's share of each image (what an even map would score)."""
    return np.asarray(masks, dtype=bool).mean(axis=(1, 2))


def input_masks(masks: np.ndarray, input_size: int) -> np.ndarray:
    """Masks at the cached side (``resize_size``) centre-cropped to the network input, exactly as
    :class:`covid_lib.train.XrayDataset` crops the images."""
    return center_crop(torch.from_numpy(np.asarray(masks, dtype=bool)), input_size).numpy()


def lung_masks(spec, rows: pd.DataFrame, *, data_root: str | os.PathLike | None = None,
               device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The paper chain's binary lung mask of each row at ``spec``'s input geometry.

    The mask is the ``paper`` pipeline's at the run's ``resize_size`` (same square fit as every
    pipeline's image), so it aligns with the images of any pipeline; whole sources come from the
    pre-processing cache, capped profiles (smoke) run the chain on these rows.

    Returns:
        ``(masks bool (N, s, s), found bool (N,))``; an image the chain rejected (no usable mask)
        has ``found`` False and an empty mask.
    """
    pipe = get_pipeline("paper", image_size=spec.resize_size).resolved()
    whole = spec.profile_settings.max_images is None
    found: dict[tuple[str, str], np.ndarray] = {}
    for source, part in rows.groupby("source", sort=True):
        if whole:
            _, index, _, masks = preprocess_source(source, pipe, data_root, return_masks=True, device=device)
        else:
            _, index, _, masks = preprocess_rows(part, pipe, device=device, return_masks=True)
        found.update({(source, str(i)): m for i, m in zip(index["image_id"].astype(str), masks)})
    keys = list(zip(rows["source"], rows["image_id"].astype(str)))
    ok = np.array([k in found for k in keys], dtype=bool)
    side = spec.resize_size
    full = np.stack([found.get(k, np.zeros((side, side), bool)) for k in keys]) if keys else \
        np.zeros((0, side, side), bool)
    return input_masks(full, spec.input_size), ok


# ---------------------------------------------------------------------------------------- summary
SUMMARY_COLUMNS = ["n", "n_patients", "n_excluded", "share", "share_low", "share_high", "baseline", "baseline_low",
                   "baseline_high", "excess", "excess_low", "excess_high", "interval"]


def share_summary(share: np.ndarray, baseline: np.ndarray, groups: np.ndarray, *, n_boot: int = 2000,
                  seed: int = 0, alpha: float = 0.05) -> dict:
    """Mean in-lung share, mean uniform baseline and mean excess (share - baseline, per image) with
    percentile intervals from one patient-cluster bootstrap (the same resamples for all three).
    Images with a NaN share (a map without mass, or no mask) are left out and counted."""
    share, baseline = np.asarray(share, float), np.asarray(baseline, float)
    ok = np.isfinite(share) & np.isfinite(baseline)
    g = np.asarray(groups).astype(str)[ok]
    values = np.column_stack([share[ok], baseline[ok], share[ok] - baseline[ok]])
    out = {"n": int(ok.sum()), "n_patients": len(set(g)), "n_excluded": int((~ok).sum())}
    if not ok.any():
        return {**out, **{c: np.nan for c in SUMMARY_COLUMNS[3:-1]}, "interval": "no images"}
    reps = stats.bootstrap_replicates(lambda w: (w @ values) / w.sum(1, keepdims=True), len(g), groups=g,
                                      n_boot=n_boot, seed=seed)
    for j, name in enumerate(("share", "baseline", "excess")):
        low, high, _ = stats.percentile_interval(reps[:, j], alpha)
        out.update({name: float(values[:, j].mean()), f"{name}_low": low, f"{name}_high": high})
    out["interval"] = f"cluster bootstrap (n_boot={n_boot}, {out['n_patients']} patient groups)"
    return out


def excess_difference(a: pd.DataFrame, b: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0,
                      alpha: float = 0.05) -> dict:
    """Mean excess of ``a`` minus mean excess of ``b`` (tables with ``share``, ``baseline``,
    ``group_id``) with a cluster bootstrap over the patients of both (disjoint sets, or the same
    images of two models: then the difference is paired through the shared patient groups)."""
    parts = []
    for k, t in enumerate((a, b)):
        t = t[np.isfinite(t["share"]) & np.isfinite(t["baseline"])]
        parts.append(pd.DataFrame({"e": t["share"] - t["baseline"], "k": k, "g": t["group_id"].astype(str)}))
    both = pd.concat(parts, ignore_index=True)
    if not all(len(p) for p in parts):
        return {"diff": np.nan, "diff_low": np.nan, "diff_high": np.nan, "n_a": len(parts[0]), "n_b": len(parts[1])}
    e, in_a = both["e"].to_numpy(), (both["k"] == 0).to_numpy()

    def stat(w: np.ndarray) -> np.ndarray:
        wa, wb = w * in_a, w * ~in_a
        with np.errstate(divide="ignore", invalid="ignore"):
            return (wa @ e) / wa.sum(1) - (wb @ e) / wb.sum(1)

    reps = stats.bootstrap_replicates(stat, len(both), groups=both["g"].to_numpy(), n_boot=n_boot, seed=seed)
    low, high, _ = stats.percentile_interval(reps, alpha)
    return {"diff": float(stat(np.ones((1, len(both))))[0]), "diff_low": low, "diff_high": high,
            "n_a": int(in_a.sum()), "n_b": int((~in_a).sum())}


# ------------------------------------------------------------------------------------- one model
@dataclass
class SaliencyResult:
    """One model's maps on some rows: ``table`` (one row per image: ``[set,] source,
    image_id, group_id, label, score, has_mask, share, baseline``), and the images (uint8), maps (float16)
    and lung masks (bool), all at the input resolution and in table order."""

    table: pd.DataFrame
    images: np.ndarray
    maps: np.ndarray
    masks: np.ndarray


def model_saliency(spec, rows: pd.DataFrame, *, data_root: str | os.PathLike | None = None, device: str = "cpu",
                   storage: str | os.PathLike | None = None, method: str = "gradcam",
                   batch_size: int = 16) -> SaliencyResult:
    """A finished run's COVID+ maps, in-lung shares and scores on ``rows``, through the run's own
    chain and normalisation (:func:`covid_lib.runs.execution.rows_dataset`)."""
    model, meta = load_model(spec, device, storage)
    data, kept, _ = rows_dataset(spec, rows, mean=meta["mean"], std=meta["std"], data_root=data_root,
                                 set_name="saliency")
    masks, has_mask = lung_masks(spec, kept, data_root=data_root, device=device)
    maps, scores = [], []
    for x, _, _ in data.batches(batch_size, device=device):
        maps.append(saliency_maps(model, x, method))
        with torch.no_grad():
            scores.append(torch.softmax(model(x).float(), 1)[:, COVID_CLASS].cpu().numpy())
    side = spec.input_size
    maps = np.concatenate(maps) if maps else np.zeros((0, side, side), np.float32)
    cols = [c for c in ("set", "source", "image_id", "group_id", "label") if c in kept]
    table = kept[cols].reset_index(drop=True).astype({"group_id": str, "image_id": str})
    table["score"] = np.concatenate(scores) if scores else np.zeros(0)
    table["has_mask"] = has_mask
    table["share"] = np.where(has_mask, in_lung_share(maps, masks), np.nan)
    table["baseline"] = np.where(has_mask, lung_area_share(masks), np.nan)
    return SaliencyResult(table, data.images, maps.astype(np.float16), masks)
