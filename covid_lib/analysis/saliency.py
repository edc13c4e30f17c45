"""Where a classifier looks: CAM and Grad-CAM maps and the share of their mass inside the lungs.

DeGrave et al. (2021) found the saliency of COVID-19 classifiers outside the lungs; Ben Ahmed et
al. (2021, Sec. "Results", fine-tuning) applied Grad-CAM and called the result inconclusive; the
KTH report (Sec. 3.4) shows class activation maps (CAM, Zhou et al. 2016). This module turns a map
into a number: the **in-lung share**, the fraction of a map's (non-negative) mass that falls inside
the U-Net lung mask, beside the share a uniform map would get (the lung's share of the image).

- :func:`choose_layer`: where the maps are taken. The last feature map of a ResNet at 128 px is
  4x4 (one cell a quarter of the image's side), too coarse to place a lung, and many of its maps
  have no positive mass at all; the default is the deepest layer with at least :data:`MIN_CELLS`
  (16) cells a side: ``layer2`` of ResNet-18/50 at 128 px, ``layer1`` at the smoke profile's
  64 px, Conv8's last map (16x16 at 128 px). Grad-CAM is defined at any convolutional layer
  (Selvaraju et al. 2017); CAM only at the last.
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
- :func:`map_status`: a map with no positive mass or a constant one places nothing; it is
  counted per model and group as *not measurable* (:func:`status_counts`), never dropped silently.
- :func:`model_saliency`: all of it for a finished run on given rows.
- :func:`mark_check`, :func:`planted_saliency`: the maps' own check, on models trained with a
  planted corner mark (:mod:`covid_lib.runs.planted`): where the model uses the mark, the map must
  put more of its mass in the mark's box than the box's area share, and more than on the unmarked
  copy of the same image. A map that fails this cannot be read for lungs either.

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

METHODS = ("cam", "gradcam", "hirescam", "gradinput")
COVID_CLASS = 1


# ------------------------------------------------------------------------------------------ maps
#: The coarsest map the chapter accepts, in cells a side (issue 16, item 7): at 128 px one cell is
#: 8 px, about a rib's width; the last feature map of a ResNet (``layer4``, stride 32) is 4x4 there,
#: one cell a quarter of the image, too coarse to tell a lung from the film's corner.
MIN_CELLS = 16

#: Layers a map may be taken at, deepest first: the stages of a timm ResNet, then Conv8's feature stack.
LAYER_CANDIDATES = ("layer4", "layer3", "layer2", "layer1", "features")


def last_layer(model: torch.nn.Module) -> str:
    """The name of the module whose output is the last feature map (what the global pool averages):
    ``layer4`` of a timm ResNet, ``features`` of Conv8 (where CAM is defined)."""
    for name in ("layer4", "features"):
        if hasattr(model, name):
            return name
    raise ValueError(f"no known last feature layer on {type(model).__name__}")


def layer_sides(model: torch.nn.Module, input_size: int) -> dict[str, int]:
    """Side in cells of each of :data:`LAYER_CANDIDATES`' outputs that ``model`` has, for a square
    ``input_size`` input (one forward pass with hooks; channels read from the first conv)."""
    names = [n for n in LAYER_CANDIDATES if hasattr(model, n)]
    sides: dict[str, int] = {}
    hooks = [getattr(model, n).register_forward_hook(
        lambda _m, _i, out, n=n: sides.__setitem__(n, int(out.shape[-1]))) for n in names]
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    p = next(model.parameters())
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, conv.in_channels, input_size, input_size, dtype=p.dtype, device=p.device))
    finally:
        for h in hooks:
            h.remove()
    return {n: sides[n] for n in names}


def choose_layer(model: torch.nn.Module, input_size: int, min_cells: int = MIN_CELLS) -> tuple[str, int]:
    """The deepest layer whose map has at least ``min_cells`` cells a side at ``input_size``, and its
    side: ``layer2`` of ResNet-18 and ResNet-50 at 128 px (16x16; ``layer3`` is 8x8, ``layer4``
    4x4), Conv8's ``features`` (16x16, its last map). Deeper layers carry more of the class
    evidence, shallower ones more position (Selvaraju et al. 2017, Sec. 3); the deepest that can
    still place a lung is the choice."""
    sides = layer_sides(model, input_size)
    for name, side in sides.items():  # deepest first
        if side >= min_cells:
            return name, side
    raise ValueError(f"no layer of {type(model).__name__} has {min_cells}x{min_cells} cells at {input_size} px "
                     f"(sides: {sides}); use a larger input")


def target_layer(model: torch.nn.Module, layer: str | None = None) -> torch.nn.Module:
    """The module named ``layer`` (one of :data:`LAYER_CANDIDATES`); None: :func:`last_layer`."""
    name = last_layer(model) if layer is None else layer
    if name not in LAYER_CANDIDATES or not hasattr(model, name):
        raise ValueError(f"{type(model).__name__} has no saliency layer {name!r}")
    return getattr(model, name)


def resolve_layer(model: torch.nn.Module, input_size: int, layer: str | None = "auto",
                  min_cells: int = MIN_CELLS) -> tuple[str, int]:
    """``(name, side in cells)`` of the layer a map is taken at: ``"auto"`` is :func:`choose_layer`,
    None or ``"cam"`` the last feature map, ``"input"`` the input itself (``gradinput``), a name
    that layer."""
    if layer == "input":
        return "input", int(input_size)
    sides = layer_sides(model, input_size)
    if layer == "auto":
        return choose_layer(model, input_size, min_cells)
    name = last_layer(model) if layer in (None, "cam") else layer
    if name not in sides:
        raise ValueError(f"{type(model).__name__} has no saliency layer {name!r}")
    return name, sides[name]


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
                 class_index: int = COVID_CLASS, *, layer: str | None = None, relu: bool = True,
                 contrast: bool = True) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) or HiResCAM of ``pytorch_grad_cam`` for the class's
    log-odds (``contrast``, two-class heads) or its logit, at ``layer``'s resolution (N, h, w;
    ``layer`` None: the last feature map), without the package's per-image rescaling."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = _package_class(method)
    two = model.get_classifier().weight.shape[0] == 2
    target = _LogOdds(class_index) if contrast and two else ClassifierOutputTarget(class_index)
    with torch.enable_grad(), cls(model=model.eval(), target_layers=[target_layer(model, layer)]) as cam:
        cam.relu = relu
        return cam(input_tensor=x, targets=[target] * len(x))


def input_gradient_maps(model: torch.nn.Module, x: torch.Tensor, class_index: int = COVID_CLASS) -> np.ndarray:
    """Gradient x input of the class's log-odds (two-class heads; else its logit), clipped at zero
    and summed over channels (N, H, W), at the input's own resolution.

    The input is normalised by the training set's mean and standard deviation, so ``x = 0`` is a
    uniform mean-grey image and each pixel's value is the first-order estimate of its
    contribution to the log-odds against that image: the one-step form of the path attributions
    (expected gradients) DeGrave et al. (2021) used, with one baseline instead of many."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model.eval()(x).float()
        target = out[:, class_index] - out[:, 1 - class_index] if out.shape[1] == 2 else out[:, class_index]
        (grad,) = torch.autograd.grad(target.sum(), x)  # eval-mode batch norm: images independent
    return torch.relu(grad * x.detach()).sum(1).cpu().numpy()


def saliency_maps(model: torch.nn.Module, x: torch.Tensor, method: str = "gradcam",
                  class_index: int = COVID_CLASS, *, layer: str | None = None) -> np.ndarray:
    """Non-negative maps (N, H, W) at the input's resolution of the log-odds of ``class_index``
    (COVID+ against COVID-), taken at ``layer`` (None: the last feature map). ``cam`` exists only
    at the last feature map (the head's weights multiply it)."""
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose from {', '.join(METHODS)}")
    if method == "gradinput":
        if layer not in (None, "input"):
            raise ValueError(f"gradinput maps are taken at the input, not at {layer!r}")
        return input_gradient_maps(model, x, class_index)
    if method == "cam":
        if layer not in (None, last_layer(model)):
            raise ValueError(f"CAM is defined at the last feature map ({last_layer(model)}), not {layer!r}")
        raw = class_activation_maps(model, x, class_index)
    else:
        raw = package_maps(model, x, method, class_index, layer=layer)
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


#: Why a map gives no share: ``measured`` (it does), ``no mask`` (the chain rejected the image),
#: ``no positive mass`` (the log-odds rise with no part of the image: the clipped map is all zero),
#: ``constant`` (the same value everywhere: it places nothing, and would score the baseline exactly).
MAP_STATES = ("measured", "no mask", "no positive mass", "constant")


def map_status(maps: np.ndarray, has_mask: np.ndarray | None = None, *, rtol: float = 1e-6) -> np.ndarray:
    """One of :data:`MAP_STATES` per map (N,): a map is ``constant`` when its range is at most
    ``rtol`` times its maximum. Counted, never dropped silently (issue 16, item 7)."""
    maps = np.asarray(maps, dtype=np.float64)
    top, low = maps.max(axis=(1, 2)), maps.min(axis=(1, 2))
    out = np.full(len(maps), "measured", dtype=object)
    out[(top > 0) & (top - low <= rtol * top)] = "constant"
    out[top <= 0] = "no positive mass"
    if has_mask is not None:
        out[~np.asarray(has_mask, bool)] = "no mask"
    return out


def status_counts(status) -> dict[str, int]:
    """``n_<state>`` counts of :func:`map_status` values (every state, zeros included) and
    ``n_not_measurable`` (maps that exist but place nothing: no positive mass or constant)."""
    s = pd.Series(np.asarray(status, dtype=object))
    out = {f"n_{k.replace(' ', '_')}": int((s == k).sum()) for k in MAP_STATES}
    out["n_not_measurable"] = out["n_no_positive_mass"] + out["n_constant"]
    return out


def lung_area_share(masks: np.ndarray) -> np.ndarray:
    """The uniform baseline: the lung's share of each image (what an even map would score)."""
    return np.asarray(masks, dtype=bool).mean(axis=(1, 2))


def input_masks(masks: np.ndarray, input_size: int) -> np.ndarray:
    """Masks at the cached side (``resize_size``) centre-cropped to the network input, exactly as
    :class:`covid_lib.train.XrayDataset` crops the images."""
    from covid_lib.train.datasets import center_crop

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
    from covid_lib.preprocess import get_pipeline, preprocess_rows, preprocess_source

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
    image_id, group_id, label, score, has_mask, map_status, share, baseline``; ``share`` is NaN
    unless the map is ``measured``), the images (uint8), maps (float16) and lung masks (bool), all
    at the input resolution and in table order, and the layer the maps were taken at with its side
    in cells."""

    table: pd.DataFrame
    images: np.ndarray
    maps: np.ndarray
    masks: np.ndarray
    layer: str = ""
    cells: int = 0


def model_saliency(spec, rows: pd.DataFrame, *, data_root: str | os.PathLike | None = None, device: str = "cpu",
                   storage: str | os.PathLike | None = None, method: str = "gradcam", layer: str | None = "auto",
                   min_cells: int = MIN_CELLS, batch_size: int = 16) -> SaliencyResult:
    """A finished run's COVID+ maps, in-lung shares and scores on ``rows``, through the run's own
    chain and normalisation (:func:`covid_lib.runs.execution.rows_dataset`); the maps at ``layer``
    (``"auto"``: :func:`choose_layer` with ``min_cells``; None: the last feature map)."""
    from covid_lib.runs import load_model
    from covid_lib.runs.execution import rows_dataset

    model, meta = load_model(spec, device, storage)
    data, kept, _ = rows_dataset(spec, rows, mean=meta["mean"], std=meta["std"], data_root=data_root,
                                 set_name="saliency")
    masks, has_mask = lung_masks(spec, kept, data_root=data_root, device=device)
    layer, cells = resolve_layer(model, spec.input_size, _layer_of(method, layer), min_cells)
    maps, scores = [], []
    for x, _, _ in data.batches(batch_size, device=device):
        maps.append(saliency_maps(model, x, method, layer=layer))
        with torch.no_grad():
            scores.append(torch.softmax(model(x).float(), 1)[:, COVID_CLASS].cpu().numpy())
    side = spec.input_size
    maps = np.concatenate(maps) if maps else np.zeros((0, side, side), np.float32)
    cols = [c for c in ("set", "source", "image_id", "group_id", "label") if c in kept]
    table = kept[cols].reset_index(drop=True).astype({"group_id": str, "image_id": str})
    table["score"] = np.concatenate(scores) if scores else np.zeros(0)
    table["has_mask"] = has_mask
    table["map_status"] = map_status(maps, has_mask)
    table["share"] = np.where(table["map_status"] == "measured", in_lung_share(maps, masks), np.nan)
    table["baseline"] = np.where(has_mask, lung_area_share(masks), np.nan)
    return SaliencyResult(table, data.images, maps.astype(np.float16), masks, layer, cells)


# ---------------------------------------------------------------------- the check on a planted mark
def region_box(regions: np.ndarray, pad: int = 0) -> np.ndarray:
    """Each (N, H, W) region's bounding box widened by ``pad`` pixels a side (clipped to the image);
    an empty region gives an empty box. A map localises no finer than one of its cells, so the box
    of a small mark is padded by one cell."""
    regions = np.asarray(regions, bool)
    out = np.zeros_like(regions)
    h, w = regions.shape[1:]
    for k, r in enumerate(regions):
        rows, cols = np.flatnonzero(r.any(1)), np.flatnonzero(r.any(0))
        if len(rows):
            out[k, max(0, rows[0] - pad):min(h, rows[-1] + 1 + pad), max(0, cols[0] - pad):min(w, cols[-1] + 1 + pad)] = True
    return out


def mark_check(marked_maps: np.ndarray, plain_maps: np.ndarray, boxes: np.ndarray, groups, *, n_boot: int = 2000,
               seed: int = 0, alpha: float = 0.05) -> dict:
    """Does a map find a planted mark? The share of each marked image's map mass inside the mark's
    box against the box's area share (what an even map scores), and the same share on the unmarked
    copy of the same image (where the corner holds no mark).

    A map that sees the mark where the model uses it puts more than the area share there on the
    marked copy, and more than on the unmarked one (the paired difference, one patient-cluster
    bootstrap over the images of both). Maps that are not ``measured`` (:func:`map_status`) are
    counted, not scored.

    Returns:
        ``marked_*`` and ``unmarked_*``: :func:`share_summary` (``share``, ``baseline``, ``excess``
        with ``_low`` / ``_high``, ``n``, ``n_patients``) and :func:`status_counts`; ``diff``,
        ``diff_low``, ``diff_high``: marked minus unmarked share; ``found``: both the marked excess's
        and the difference's intervals lie above zero.
    """
    boxes = np.asarray(boxes, bool)
    groups = np.asarray(groups).astype(str)
    base = lung_area_share(boxes)
    has_box = boxes.any(axis=(1, 2))
    out: dict = {}
    tables = []
    for name, maps in (("marked", marked_maps), ("unmarked", plain_maps)):
        status = map_status(maps, has_box)
        share = np.where(status == "measured", in_lung_share(maps, boxes), np.nan)
        s = share_summary(share, np.where(has_box, base, np.nan), groups, n_boot=n_boot, seed=seed, alpha=alpha)
        out.update({f"{name}_{k}": v for k, v in s.items() if k != "interval"})
        out.update({f"{name}_{k}": v for k, v in status_counts(status).items()})
        tables.append(pd.DataFrame({"share": share, "baseline": base, "group_id": groups}))
    d = excess_difference(*tables, n_boot=n_boot, seed=seed, alpha=alpha)
    out.update({"diff": d["diff"], "diff_low": d["diff_low"], "diff_high": d["diff_high"]})
    out["found"] = bool(out["marked_excess_low"] > 0 and d["diff_low"] > 0)
    return out


@dataclass
class PlantedSaliency:
    """A planted run's COVID+ maps on its test images, each marked and unmarked (:func:`planted_saliency`).

    ``table``: one row per image (``source, image_id, group_id, label``, ``score_marked``,
    ``score_unmarked``); ``images`` (marked copies, uint8), ``marked_maps``, ``plain_maps`` (float32)
    per ``"method · layer"`` key, ``boxes`` (the mark's box padded by one cell, per key), ``cells``
    (side per key); all at the input resolution and in table order. ``change_in_box`` and
    ``change_outside``: the mean absolute marked-minus-unmarked input (grey levels in [0, 1])
    inside the glyph's box (NaN: the crop cut it away) and outside it."""

    table: pd.DataFrame
    images: np.ndarray
    marked_maps: dict[str, np.ndarray]
    plain_maps: dict[str, np.ndarray]
    boxes: dict[str, np.ndarray]
    cells: dict[str, int]


def _layer_of(method: str, layer: str | None) -> str | None:
    """The layer a ``method`` reads: ``input`` for ``gradinput``, the last map for ``cam``."""
    return "input" if method == "gradinput" else "cam" if method == "cam" else layer


def planted_saliency(spec, *, data_root: str | os.PathLike | None = None, device: str = "cpu",
                     storage: str | os.PathLike | None = None,
                     views: tuple[tuple[str, str | None], ...] = (("gradcam", "auto"), ("gradcam", None)),
                     min_cells: int = MIN_CELLS, batch_size: int = 16, allow_mismatch: bool = False) -> PlantedSaliency:
    """Maps of a planted run (``spec.plant``, :mod:`covid_lib.runs.planted`) on its composition's
    test images (the profile's cap, as the run drew them), each with the mark planted on the raw
    image and without it, through the run's chain and normalisation; one map per ``(method, layer)``
    of ``views`` (:func:`resolve_layer`), keyed ``"method · layer"``. The box is the mark's carried region (:class:`~covid_lib.preprocess.plant.
    MarkedImages`' ``regions``) centre-cropped to the input, padded by one cell of that layer.
    ``allow_mismatch``: map a cached checkpoint that does not reproduce its record (a model trained
    here; the caller says so) instead of refusing it (:class:`covid_lib.runs.CheckpointMismatch`)."""
    from covid_lib.data import compose, limit_rows
    from covid_lib.preprocess import get_pipeline, load_model as load_unet
    from covid_lib.preprocess.plant import preprocess_marked
    from covid_lib.runs import load_model
    from covid_lib.train import make_dataset

    if spec.plant is None:
        raise ValueError(f"run {spec.run_id} has no planted mark")
    model, meta = load_model(spec, device, storage, allow_mismatch=allow_mismatch)
    rows = limit_rows(compose(spec.composition, data_root, seed=spec.split_seed), spec.profile_settings.max_images,
                      seed=spec.split_seed)
    rows = rows[rows["split"] == "test"].reset_index(drop=True)
    pipe = get_pipeline(spec.pipeline, image_size=spec.resize_size).resolved()
    unet = load_unet(pipe, device) if pipe.uses_model else None
    n = len(rows)
    copies = {flag: preprocess_marked(rows, pipe, spec.plant, np.full(n, flag), model=unet, device=device)
              for flag in (False, True)}
    keep = copies[False].ok & copies[True].ok
    kept = rows[keep].reset_index(drop=True)
    region = input_masks(copies[True].regions[keep], spec.input_size)
    marked_maps: dict[str, np.ndarray] = {}
    plain_maps: dict[str, np.ndarray] = {}
    boxes: dict[str, np.ndarray] = {}
    cells: dict[str, int] = {}
    scores: dict[bool, np.ndarray] = {}
    data = {}
    for flag in (False, True):
        data[flag] = make_dataset(kept, copies[flag].images[keep], input_size=spec.input_size, mean=meta["mean"],
                                  std=meta["std"])
        with torch.no_grad():
            scores[flag] = np.concatenate([torch.softmax(model(x).float(), 1)[:, COVID_CLASS].cpu().numpy()
                                           for x, _, _ in data[flag].batches(batch_size, device=device)] or
                                          [np.zeros(0)])
    for method, layer in views:
        name, side = resolve_layer(model, spec.input_size, _layer_of(method, layer), min_cells)
        key = f"{method} · {name}"
        if key in cells:
            continue
        for flag, store in ((True, marked_maps), (False, plain_maps)):
            parts = [saliency_maps(model, x, method, layer=name) for x, _, _ in data[flag].batches(batch_size, device=device)]
            store[key] = (np.concatenate(parts) if parts else
                          np.zeros((0, spec.input_size, spec.input_size))).astype(np.float32)
        boxes[key] = region_box(region, pad=int(np.ceil(spec.input_size / side)))
        cells[key] = side
    cols = [c for c in ("source", "image_id", "group_id", "label") if c in kept]
    table = kept[cols].astype({"group_id": str, "image_id": str})
    table["score_marked"], table["score_unmarked"] = scores[True], scores[False]
    # where the mark changes the model's input: inside its box, or (through a global step such as
    # the chain's histogram equalisation) everywhere else
    diff = np.abs(data[True].images.astype(np.float32) - data[False].images.astype(np.float32)) / 255
    glyph = region_box(region)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["change_in_box"] = (diff * glyph).sum(axis=(1, 2)) / glyph.sum(axis=(1, 2))
        table["change_outside"] = (diff * ~glyph).sum(axis=(1, 2)) / (~glyph).sum(axis=(1, 2))
    return PlantedSaliency(table, data[True].images, marked_maps, plain_maps, boxes, cells)
