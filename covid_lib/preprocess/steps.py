"""The chain's image steps (Tartaglione et al. 2020, Sec. III-B): pure functions on 2-D arrays.

Check the image, equalise its histogram, clean and check a lung mask, crop to the lungs (Ben
Ahmed et al. 2021), fit to a square, blur the mask, apply it, scale to [0, 1]. The U-Net's part
is in :mod:`covid_lib.preprocess.lungs`; their composition in :mod:`covid_lib.preprocess.chain`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import exposure

EQUALIZATIONS = ("global", "clahe", "none")
FITS = ("pad", "squash", "center_crop")
MIN_SIDE = 32
MIN_DYNAMIC_RANGE = 8


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
