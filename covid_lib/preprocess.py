"""The paper's pre-processing chain (Tartaglione et al. 2020, Sec. III-B, Fig. 1), step by step.

Each step is a small pure function on 2-D numpy arrays, usable alone; :func:`preprocess_image`
is their composition, and :func:`preprocess_source` runs it over a whole source once and caches
the result, so that training never decodes PNGs per epoch.

The chain, in order (a :class:`Pipeline` switches steps on and off):

1. :func:`check_image` - refuse blank, uniform or tiny images (:class:`PreprocessError`).
2. :func:`equalize` - histogram equalisation, global (the paper) or CLAHE.
3. :func:`predict_lung_mask` - the U-Net of :mod:`covid_lib.segment` (trained on Montgomery and
   Shenzhen) at its own input size; probability upsampled to the image, thresholded at 0.5,
   the two largest components kept and their holes filled. :func:`check_mask` rejects empty,
   tiny, huge or fragmented masks.
4. :func:`crop_to_lungs` (optional, off in the paper's chain) - the lung ROI crop of Ben Ahmed
   et al. 2021: the mask's bounding box, rejected when it spans under half the image's height or
   width, or the mask is empty.
5. :func:`fit_square` - to the output side ``image_size`` (default: zero padding to a square,
   then resizing, so the aspect ratio is kept and no lung is cut off).
6. :func:`blur_mask` - Gaussian blur of the binary mask "with a 3 pixel radius". The paper does
   not say at which resolution; here the 3 pixels are pixels of the *output* image (the
   classifier's working resolution, ``image_size``), and the radius is the Gaussian's standard
   deviation (the convention of PIL's ``GaussianBlur(radius)``).
7. :func:`apply_mask` then :func:`normalize01` - multiply, then min-max scale to [0, 1].

Nothing is silently dropped: every image that fails a step is reported with its reason in the
rejections table of :func:`preprocess_source` (or raises :class:`PreprocessError` when a single
image is processed).

Example:
    >>> import numpy as np
    >>> ramp = np.tile(np.arange(50, 101, dtype=np.uint8), (8, 1))  # 51 grey levels, 50..100
    >>> eq = equalize(ramp)  # the same 51 levels, spread evenly over 0..255
    >>> len(np.unique(eq)), int(eq.min()), int(eq.max())
    (51, 5, 255)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from skimage import exposure

from covid_lib.paths import REPO_ROOT, cache_dir

#: The committed lung U-Net (see :mod:`covid_lib.segment`).
DEFAULT_WEIGHTS = REPO_ROOT / "weights" / "unet_lungs.pt"
EQUALIZATIONS = ("global", "clahe", "none")
FITS = ("pad", "squash", "center_crop")
MIN_SIDE = 32
MIN_DYNAMIC_RANGE = 8
REJECTION_COLUMNS = ["image_id", "source", "patient_id", "step", "reason"]


class PreprocessError(ValueError):
    """An image the chain cannot process safely; ``step`` names the step, the message says why."""

    def __init__(self, message: str, step: str = "input"):
        super().__init__(message)
        self.step = step


# --------------------------------------------------------------------------------------- steps
def check_image(img: np.ndarray, *, min_side: int = MIN_SIDE, min_range: int = MIN_DYNAMIC_RANGE) -> np.ndarray:
    """Return ``img`` unchanged if it is a usable 2-D grayscale image, else raise.

    Raises:
        PreprocessError: not 2-D, smaller than ``min_side`` on a side, not finite, or with fewer
            than ``min_range`` grey levels between its 1st and 99th percentile (blank or uniform).
    """
    img = np.asarray(img)
    if img.ndim != 2:
        raise PreprocessError(f"expected a 2-D grayscale image, got shape {img.shape}")
    if min(img.shape) < min_side:
        raise PreprocessError(f"image too small: {img.shape[1]}x{img.shape[0]} px (min side {min_side})")
    if not np.isfinite(img).all():
        raise PreprocessError("image holds NaN or infinite values")
    lo, hi = np.percentile(img, [1, 99])
    if hi - lo < min_range:
        raise PreprocessError(f"blank or uniform image: 1st-99th percentile range {hi - lo:.1f} < {min_range}")
    return img


def _to_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float64)
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    return np.round((img - lo) / (hi - lo) * 255).astype(np.uint8)


def equalize(img: np.ndarray, method: str = "global", *, clip_limit: float = 0.01) -> np.ndarray:
    """Histogram equalisation to ``uint8`` (paper step 1).

    Args:
        img: 2-D image (``uint8``; other types are min-max scaled to 8 bits first).
        method: ``"global"`` (:func:`skimage.exposure.equalize_hist`, 256 bins: the paper),
            ``"clahe"`` (:func:`skimage.exposure.equalize_adapthist`) or ``"none"``.
        clip_limit: CLAHE contrast limit.
    """
    img = _to_uint8(img)
    if method == "none":
        return img
    if method == "global":
        out = exposure.equalize_hist(img, nbins=256)
    elif method == "clahe":
        out = exposure.equalize_adapthist(img, clip_limit=clip_limit)
    else:
        raise ValueError(f"equalization must be one of {EQUALIZATIONS}, got {method!r}")
    return np.round(out * 255).astype(np.uint8)


def resize(img: np.ndarray, shape: tuple[int, int], *, resample: int = Image.BILINEAR) -> np.ndarray:
    """Resize a 2-D array to ``shape`` (rows, cols) with PIL (antialiased when shrinking)."""
    img = np.asarray(img)
    if img.shape == tuple(shape):
        return img.copy()
    mode = "F" if img.dtype != np.uint8 else "L"
    pil = Image.fromarray(img.astype(np.float32) if mode == "F" else img, mode=mode)
    out = np.asarray(pil.resize((int(shape[1]), int(shape[0])), resample=resample))
    return out.astype(img.dtype if img.dtype != bool else np.float32)


def segmenter_input(img: np.ndarray, size: int) -> np.ndarray:
    """The U-Net's input: global equalisation, bilinear resize to ``size`` x ``size``, [0, 1] float32.

    The lung U-Net is trained on exactly this; equalising first makes its input independent of
    each source's contrast (equalising an already equalised image changes almost nothing).
    """
    eq = equalize(img, "global")
    return resize(eq, (size, size)).astype(np.float32) / 255.0


def clean_mask(binary: np.ndarray, *, keep: int = 2) -> tuple[np.ndarray, float]:
    """Keep the ``keep`` largest 4-connected components, fill their holes.

    Returns:
        The cleaned boolean mask, and the share of the raw foreground the kept components hold
        (1.0 for an empty mask; a low share means a fragmented prediction).
    """
    binary = np.asarray(binary, dtype=bool)
    labels, n = ndimage.label(binary)
    if n == 0:
        return np.zeros_like(binary), 1.0
    sizes = np.bincount(labels.ravel())[1:]
    kept = np.argsort(sizes)[::-1][:keep] + 1
    mask = ndimage.binary_fill_holes(np.isin(labels, kept))
    return mask, float(sizes[kept - 1].sum() / sizes.sum())


def probability_to_mask(prob: np.ndarray, shape: tuple[int, int], *, threshold: float = 0.5) -> tuple[np.ndarray, float]:
    """Upsample a model-resolution probability map to ``shape`` (bilinear), threshold, clean.

    Returns:
        ``(mask, kept_fraction)`` as from :func:`clean_mask`.
    """
    prob = np.asarray(prob, dtype=np.float32)
    up = prob if prob.shape == tuple(shape) else resize(prob, shape)
    return clean_mask(up > threshold)


def lung_probabilities(
    images: Sequence[np.ndarray],
    model,
    size: int | None = None,
    *,
    batch_size: int = 32,
    device: str = "cpu",
) -> np.ndarray:
    """U-Net lung probabilities at the model's input size for raw 2-D images, in batches.

    Args:
        images: 2-D images of any size (each goes through :func:`segmenter_input`).
        model: a lung U-Net (e.g. from :func:`covid_lib.segment.load_unet`), in eval mode.
        size: model input side; default ``model.input_size`` (set by ``load_unet``), else 128.

    Returns:
        ``float32`` array (N, size, size) of probabilities.
    """
    import torch

    size = int(size or getattr(model, "input_size", 128))
    out = np.empty((len(images), size, size), np.float32)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            x = torch.from_numpy(np.stack([segmenter_input(im, size) for im in chunk]))[:, None]
            logits = model(x.to(device))
            out[start:start + len(chunk)] = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
    return out


def predict_lung_mask(img: np.ndarray, model, size: int | None = None, *, threshold: float = 0.5) -> np.ndarray:
    """Boolean lung mask at ``img``'s resolution (paper step 2).

    The U-Net runs at ``size`` (default: the model's training size); its probability map is
    upsampled bilinearly to the image, thresholded, reduced to the two largest components and
    hole-filled (:func:`clean_mask`). May be empty: :func:`check_mask` decides what is usable.
    """
    prob = lung_probabilities([img], model, size)[0]
    return probability_to_mask(prob, np.asarray(img).shape, threshold=threshold)[0]


def check_mask(
    mask: np.ndarray,
    *,
    kept_fraction: float = 1.0,
    min_area: float = 0.05,
    max_area: float = 0.90,
    min_kept: float = 0.80,
) -> np.ndarray:
    """Return ``mask`` if it looks like a pair of lungs, else raise :class:`PreprocessError`.

    Args:
        mask: boolean mask.
        kept_fraction: share of the raw prediction kept by :func:`clean_mask`.
        min_area, max_area: allowed share of the image covered by the mask.
        min_kept: a prediction whose two largest components hold less than this share of its
            foreground is *fragmented*.
    """
    area = float(np.mean(mask))
    if area == 0:
        raise PreprocessError("empty lung mask", step="mask")
    if kept_fraction < min_kept:
        raise PreprocessError(f"fragmented lung mask: the two largest components hold {kept_fraction:.0%} "
                              f"of the predicted area (< {min_kept:.0%})", step="mask")
    if area < min_area:
        raise PreprocessError(f"lung mask too small: {area:.1%} of the image (< {min_area:.0%})", step="mask")
    if area > max_area:
        raise PreprocessError(f"lung mask too large: {area:.1%} of the image (> {max_area:.0%})", step="mask")
    return mask


def lung_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``(top, bottom, left, right)`` of a mask, half-open (``img[top:bottom, left:right]``).

    Raises:
        PreprocessError: the mask is empty.
    """
    rows, cols = np.nonzero(np.any(mask, axis=1))[0], np.nonzero(np.any(mask, axis=0))[0]
    if len(rows) == 0:
        raise PreprocessError("empty lung mask: no bounding box", step="crop")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


CROP_RULES = ("sides", "area")


def crop_to_lungs(
    img: np.ndarray, mask: np.ndarray, *, min_fraction: float = 0.5, rule: str = "sides"
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Lung ROI crop of Ben Ahmed et al. 2021: the mask's bounding box.

    Their rejection rule: the mask is blank, or "the size of the cropped image is less than half
    of the size of the original image". ``rule="sides"`` (default) reads *size* as each side: the
    crop is rejected when its height is under half the image's height or its width under half
    its width. ``rule="area"`` reads it as area; on the manual Montgomery/Shenzhen masks that
    reading would reject most normal lungs (measured: 54% and 72% of the first 200 masks have a
    bounding box under half the image area, against 6-7% under the per-side rule), so it cannot
    be what they applied.

    Returns:
        ``(cropped image, cropped mask, bbox)``.

    Raises:
        PreprocessError: empty mask, or a crop under ``min_fraction`` of the image.
    """
    if rule not in CROP_RULES:
        raise ValueError(f"rule must be one of {CROP_RULES}, got {rule!r}")
    top, bottom, left, right = lung_bbox(mask)
    h, w = mask.shape
    fh, fw = (bottom - top) / h, (right - left) / w
    if rule == "area" and fh * fw < min_fraction:
        raise PreprocessError(f"lung crop covers {fh * fw:.0%} of the image area (< {min_fraction:.0%})",
                              step="crop")
    if rule == "sides" and min(fh, fw) < min_fraction:
        raise PreprocessError(f"lung crop spans {fh:.0%} of the image height and {fw:.0%} of its width "
                              f"(< {min_fraction:.0%})", step="crop")
    return img[top:bottom, left:right], mask[top:bottom, left:right], (top, bottom, left, right)


def fit_square(img: np.ndarray, size: int, mode: str = "pad", *, resample: int = Image.BILINEAR) -> np.ndarray:
    """Make a 2-D array ``size`` x ``size``.

    Modes: ``"pad"`` (zero-pad the short side, centred, then resize: aspect kept, nothing cut),
    ``"squash"`` (resize, aspect not kept), ``"center_crop"`` (resize the short side to ``size``,
    then cut the centre: torchvision's ``Resize`` + ``CenterCrop``).
    """
    img = np.asarray(img)
    h, w = img.shape
    if mode == "squash":
        return resize(img, (size, size), resample=resample)
    if mode == "pad":
        side = max(h, w)
        canvas = np.zeros((side, side), img.dtype)
        top, left = (side - h) // 2, (side - w) // 2
        canvas[top:top + h, left:left + w] = img
        return resize(canvas, (size, size), resample=resample)
    if mode == "center_crop":
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        big = resize(img, (nh, nw), resample=resample)
        top, left = (nh - size) // 2, (nw - size) // 2
        return big[top:top + size, left:left + size]
    raise ValueError(f"fit must be one of {FITS}, got {mode!r}")


def blur_mask(mask: np.ndarray, radius_px: float = 3.0, at_size: int | None = None) -> np.ndarray:
    """Gaussian-blurred mask in [0, 1] (paper: "blurred ... using a 3 pixel radius").

    Args:
        mask: 2-D mask (bool or 0/1).
        radius_px: standard deviation of the Gaussian, in pixels at ``at_size`` (PIL's
            ``GaussianBlur(radius)`` convention).
        at_size: the shorter side of the resolution at which ``radius_px`` is measured; default
            the mask's own. The chain blurs at its output size (the classifier's input), so there
            the two coincide; passing ``at_size`` rescales the radius for a mask at another size.

    Returns:
        ``float32`` array; outside the image counts as background (zero padding), so blurring
        a cropped mask equals cropping a blurred one.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if radius_px < 0:
        raise ValueError(f"radius_px must be >= 0, got {radius_px}")
    sigma = radius_px * (min(mask.shape) / at_size if at_size else 1.0)
    if sigma == 0:
        return mask.copy()
    return ndimage.gaussian_filter(mask, sigma=sigma, mode="constant", cval=0.0, truncate=4.0).clip(0, 1)


def apply_mask(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pixel-wise product of an image and a (soft) mask, as ``float32``."""
    img, mask = np.asarray(img), np.asarray(mask)
    if img.shape != mask.shape:
        raise ValueError(f"image {img.shape} and mask {mask.shape} differ in shape")
    return img.astype(np.float32) * mask.astype(np.float32)


def normalize01(img: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] as ``float32`` (paper step 4).

    Raises:
        PreprocessError: the image is constant (e.g. a fully masked-out image): it would become
            all zeros, a black image no classifier should see.
    """
    img = np.asarray(img, dtype=np.float32)
    lo, hi = float(img.min()), float(img.max())
    if not hi > lo:
        raise PreprocessError(f"constant image (all {lo:g}) cannot be normalised", step="normalize")
    return (img - lo) / (hi - lo)


# ------------------------------------------------------------------------------------ pipeline
@dataclass(frozen=True)
class Pipeline:
    """A pre-processing configuration; :attr:`hash` names its cache.

    Attributes:
        name: a label (not part of the hash).
        image_size: side of the square output, in pixels (the classifier's working resolution;
            the paper's classifier resizes to 256 then centre-crops 224 at the same scale).
        equalization: ``"global"`` (paper), ``"clahe"`` or ``"none"``.
        mask: multiply by the blurred U-Net lung mask (paper: on).
        blur_radius: Gaussian sigma in output pixels (paper: 3).
        crop: Ben Ahmed et al.'s lung ROI crop (paper: off).
        fit: how the (cropped) image becomes square: see :func:`fit_square`.
        weights: U-Net checkpoint path (default: the committed ``weights/unet_lungs.pt``); not
            hashed - its content is, through ``weights_hash``.
        weights_hash: sha256 prefix of the checkpoint, filled by :meth:`resolved`.
        min_crop_fraction, crop_rule, min_mask_area, max_mask_area, min_kept_fraction: rejection rules
            (see :func:`crop_to_lungs`, :func:`check_mask`).
    """

    name: str = "paper"
    image_size: int = 256
    equalization: str = "global"
    mask: bool = True
    blur_radius: float = 3.0
    crop: bool = False
    fit: str = "pad"
    weights: str | None = None
    weights_hash: str = ""
    min_crop_fraction: float = 0.5
    crop_rule: str = "sides"
    min_mask_area: float = 0.05
    max_mask_area: float = 0.90
    min_kept_fraction: float = 0.80

    def __post_init__(self) -> None:
        if self.equalization not in EQUALIZATIONS:
            raise ValueError(f"equalization must be one of {EQUALIZATIONS}, got {self.equalization!r}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.fit!r}")
        if self.image_size < MIN_SIDE:
            raise ValueError(f"image_size must be >= {MIN_SIDE}, got {self.image_size}")
        if self.crop_rule not in CROP_RULES:
            raise ValueError(f"crop_rule must be one of {CROP_RULES}, got {self.crop_rule!r}")
        if self.blur_radius < 0:
            raise ValueError(f"blur_radius must be >= 0, got {self.blur_radius}")

    @property
    def uses_model(self) -> bool:
        """Whether the chain needs the U-Net (to mask or to crop)."""
        return self.mask or self.crop

    @property
    def weights_path(self) -> Path:
        return Path(self.weights) if self.weights else DEFAULT_WEIGHTS

    def resolved(self) -> "Pipeline":
        """This pipeline with ``weights_hash`` filled from the checkpoint file (when a model is used)."""
        if not self.uses_model or self.weights_hash:
            return self
        return replace(self, weights_hash=file_hash(self.weights_path))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def hash(self) -> str:
        """12 hex digits of sha256 over every setting except ``name`` and ``weights`` (the path).

        Unresolved pipelines that use the model hash their checkpoint file first.
        """
        settings = self.resolved().to_dict()
        settings.pop("name"), settings.pop("weights")
        if not self.uses_model:
            settings["weights_hash"] = ""
        blob = json.dumps(settings, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


#: Named pipelines. ``paper`` is Sec. III-B; ``none`` is the paper's "without pre-processing".
PIPELINES: dict[str, Pipeline] = {
    p.name: p
    for p in (
        Pipeline("paper"),
        Pipeline("none", equalization="none", mask=False),
        Pipeline("equalize", mask=False),
        Pipeline("crop", mask=False, crop=True),
        Pipeline("paper_crop", crop=True),
    )
}


def get_pipeline(pipeline: str | Pipeline = "paper", /, **overrides) -> Pipeline:
    """A named pipeline from :data:`PIPELINES` (or a :class:`Pipeline`), with fields overridden
    (e.g. ``get_pipeline("paper", image_size=128)``)."""
    if isinstance(pipeline, Pipeline):
        return replace(pipeline, **overrides) if overrides else pipeline
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")
    return replace(PIPELINES[pipeline], **overrides)


def file_hash(path: str | os.PathLike, n: int = 12) -> str:
    """sha256 prefix of a file's bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no U-Net weights at {path}; train them with `python -m covid_lib segment train` "
                                "or pass Pipeline(weights=...)")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:n]


@dataclass
class ChainResult:
    """One processed image: ``image`` (float32 [0,1], ``image_size``²), binary ``mask`` at the
    same size (None without a model), and diagnostics."""

    image: np.ndarray
    mask: np.ndarray | None
    info: dict = field(default_factory=dict)


def finish_chain(img: np.ndarray, pipeline: Pipeline, prob: np.ndarray | None = None) -> ChainResult:
    """The chain after the U-Net: ``img`` is the raw checked image, ``prob`` the model's
    probability map (required when the pipeline masks or crops)."""
    p = pipeline
    info: dict = {"height": int(img.shape[0]), "width": int(img.shape[1])}
    eq = equalize(img, p.equalization)
    mask = None
    if p.uses_model:
        if prob is None:
            raise ValueError(f"pipeline {p.name!r} needs the U-Net probability map")
        mask, kept = probability_to_mask(prob, img.shape)
        info["mask_area"] = round(float(mask.mean()), 4)
        info["mask_kept"] = round(kept, 4)
        check_mask(mask, kept_fraction=kept, min_area=p.min_mask_area, max_area=p.max_mask_area,
                   min_kept=p.min_kept_fraction)
        if p.crop:
            eq, mask, bbox = crop_to_lungs(eq, mask, min_fraction=p.min_crop_fraction, rule=p.crop_rule)
            info["bbox"] = ",".join(map(str, bbox))
    out = fit_square(eq, p.image_size, p.fit)
    if mask is not None:
        mask = fit_square(mask.astype(np.float32), p.image_size, p.fit) >= 0.5
    if p.mask:
        out = apply_mask(out, blur_mask(mask, p.blur_radius))
    try:
        out = normalize01(out)
    except PreprocessError as err:
        raise PreprocessError(f"{err} after masking", step="normalize") from None
    return ChainResult(out, mask, info)


def preprocess_image(img: np.ndarray, pipeline: Pipeline | str = "paper", model=None) -> ChainResult:
    """The whole chain on one image.

    Args:
        img: 2-D ``uint8`` image.
        pipeline: a :class:`Pipeline` or a name of :data:`PIPELINES`.
        model: the lung U-Net; loaded from ``pipeline.weights`` when needed and not given.

    Raises:
        PreprocessError: the image or its predicted mask is unusable (``err.step`` says where).
    """
    p = get_pipeline(pipeline)
    img = check_image(img)
    prob = None
    if p.uses_model:
        model = model if model is not None else _load_model(p)
        prob = lung_probabilities([img], model)[0]
    return finish_chain(img, p, prob)


def _load_model(pipeline: Pipeline, device: str = "cpu"):
    from covid_lib.segment import load_unet  # lazy: keeps torch out of mask-free pipelines

    return load_unet(pipeline.weights_path, device=device)


# --------------------------------------------------------------------------------------- cache
def _manifest_version(source_root: Path, name: str) -> str:
    manifest = source_root / name / "manifest.csv"
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:8]


def cache_path(name: str, pipeline: Pipeline, data_root=None) -> Path:
    """Where :func:`preprocess_source` caches ``name`` under ``pipeline``:
    ``cache_dir("preprocess")/<pipeline hash>/<source>-<manifest hash>.npz``."""
    from covid_lib.paths import resolve_data_root

    root = resolve_data_root(data_root)
    return cache_dir("preprocess") / pipeline.hash / f"{name}-{_manifest_version(root, name)}.npz"


def _rejection(row, step: str, reason: str) -> dict:
    return {"image_id": row["image_id"], "source": row["source"], "patient_id": row["patient_id"],
            "step": step, "reason": reason}


def _compute_source(manifest: pd.DataFrame, pipeline: Pipeline, *, model=None, batch_size: int = 32,
                    device: str = "cpu", progress: bool = False) -> dict:
    """Run the chain over every manifest row; returns arrays and tables for the cache."""
    from covid_lib.data import read_image
    from covid_lib.data.sources import ImageReadError

    p = pipeline
    if p.uses_model and model is None:
        model = _load_model(p, device)
    size = p.image_size
    images, masks, rows, rejected = [], [], [], []
    timings = {"read": 0.0, "model": 0.0, "chain": 0.0}
    records = manifest.to_dict("records")
    for start in range(0, len(records), batch_size):
        batch, pixels = [], []
        t0 = time.perf_counter()
        for rec in records[start:start + batch_size]:
            try:
                pixels.append(check_image(read_image(rec["image_path"])))
                batch.append(rec)
            except ImageReadError as err:
                rejected.append(_rejection(rec, "read", str(err)))
            except PreprocessError as err:
                rejected.append(_rejection(rec, err.step, str(err)))
        t1 = time.perf_counter()
        probs = lung_probabilities(pixels, model, batch_size=batch_size, device=device) if (p.uses_model and pixels) else [None] * len(pixels)
        t2 = time.perf_counter()
        for rec, img, prob in zip(batch, pixels, probs):
            try:
                res = finish_chain(img, p, prob)
            except PreprocessError as err:
                rejected.append(_rejection(rec, err.step, str(err)))
                continue
            images.append(np.round(res.image * 255).astype(np.uint8))
            masks.append(res.mask if res.mask is not None else np.ones((size, size), bool))
            rows.append({"image_id": rec["image_id"], "source": rec["source"], "patient_id": rec["patient_id"],
                         **res.info})
        timings["read"] += t1 - t0
        timings["model"] += t2 - t1
        timings["chain"] += time.perf_counter() - t2
        if progress:
            print(f"  {p.name}/{manifest['source'].iat[0]}: {min(start + batch_size, len(records))}/{len(records)}",
                  flush=True)
    index = pd.DataFrame(rows)
    if len(index) == 0:
        index = pd.DataFrame(columns=["image_id", "source", "patient_id"])
    return {
        "images": np.stack(images) if images else np.zeros((0, size, size), np.uint8),
        "masks": np.stack(masks) if masks else np.zeros((0, size, size), bool),
        "index": index,
        "rejections": pd.DataFrame(rejected, columns=REJECTION_COLUMNS),
        "timings": timings,
    }


def preprocess_rows(manifest: pd.DataFrame, pipeline: Pipeline | str = "paper", *, model=None,
                    batch_size: int = 32, device: str = "cpu") -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """The chain on these manifest rows only, not cached: for small subsets (smoke runs).

    Returns:
        ``(images, index, rejections)`` as :func:`preprocess_source` (``index`` holds only the
        ids and the chain's diagnostics); every row is either in ``index`` or in ``rejections``.
    """
    result = _compute_source(manifest.reset_index(drop=True), get_pipeline(pipeline).resolved(), model=model,
                             batch_size=batch_size, device=device)
    return result["images"], result["index"], result["rejections"]


def _write_cache(path: Path, result: dict, pipeline: Pipeline) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            images=result["images"],
            masks=np.packbits(result["masks"], axis=-1),
            index=np.array(result["index"].to_csv(index=False)),
            rejections=np.array(result["rejections"].to_csv(index=False)),
            pipeline=np.array(json.dumps(pipeline.resolved().to_dict(), sort_keys=True)),
        )
    os.replace(tmp, path)


def _read_cache(path: Path, size: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, pd.DataFrame]:
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
        masks = np.unpackbits(z["masks"], axis=-1, count=size).astype(bool)
        index = pd.read_csv(io.StringIO(str(z["index"])), dtype={"image_id": str, "patient_id": str})
        rejections = pd.read_csv(io.StringIO(str(z["rejections"])), dtype=str, keep_default_na=False)
    return images, masks, index, rejections


def preprocess_source(
    name: str,
    pipeline: Pipeline | str = "paper",
    data_root: str | os.PathLike | None = None,
    *,
    model=None,
    batch_size: int = 32,
    device: str = "cpu",
    refresh: bool = False,
    return_masks: bool = False,
    progress: bool = False,
):
    """Every image of a source through the chain, cached on disk after the first call.

    The cache file is ``cache_dir("preprocess")/<pipeline hash>/<source>-<manifest hash>.npz``:
    it changes when any pipeline setting, the U-Net weights or the source's manifest changes.

    Args:
        name: a source (see :data:`covid_lib.data.SOURCES`); all its rows, every view.
        pipeline: a :class:`Pipeline` or a name of :data:`PIPELINES`.
        data_root: the data root (default: ``COVID_LIB_DATA`` / ``../shared/data``).
        model: a loaded U-Net to use instead of ``pipeline.weights`` (must be those weights).
        batch_size: U-Net inference batch.
        refresh: recompute even when cached.
        return_masks: also return the binary lung masks at the output size.

    Returns:
        ``(images, index, rejections)`` (``+ masks`` when ``return_masks``): ``images`` is
        ``uint8`` (N, S, S) - the chain's [0, 1] output times 255, rounded (divide by 255 to get
        it back); ``index`` has one row per image in array order: the source manifest's columns
        (labels, view, ...) plus the chain's diagnostics (``mask_area``, ``mask_kept``, ``bbox``);
        ``rejections`` lists every image left out (``image_id``, ``step``, ``reason``),
        including those the loader excluded.
    """
    from covid_lib.data import load_source

    p = get_pipeline(pipeline).resolved()
    src = load_source(name, data_root)
    path = cache_path(name, p, data_root)
    if refresh or not path.is_file():
        result = _compute_source(src.manifest, p, model=model, batch_size=batch_size, device=device,
                                 progress=progress)
        _write_cache(path, result, p)
    images, masks, index, rejections = _read_cache(path, p.image_size)
    meta = src.manifest.drop(columns=["path"], errors="ignore")
    extra = [c for c in index.columns if c not in meta.columns]
    merged = index[["image_id"]].merge(meta, on="image_id", how="left", validate="one_to_one")
    index = pd.concat([merged, index[extra].reset_index(drop=True)], axis=1)
    loader = src.exclusions.assign(step="load")[["image_id", "source", "patient_id", "step", "reason"]]
    rejections = pd.concat([loader.astype(str), rejections], ignore_index=True) if len(loader) else rejections
    out = (images, index, rejections)
    return (*out, masks) if return_masks else out
