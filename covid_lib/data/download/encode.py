"""Image and mask encoding of the data README: 8-bit grayscale, shorter side 256 px, binary masks."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from covid_lib.data.download.errors import BuildError


#: Shorter side of an encoded image, in pixels (never upscaled).
TARGET_SHORT_SIDE = 256
#: A resized mask pixel is lung when its bilinear value is above this.
MASK_THRESHOLD = 127
_HIGH_BIT_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def target_size(width: int, height: int, short_side: int = TARGET_SHORT_SIDE) -> tuple[int, int]:
    """Size with the shorter side ``short_side`` and the aspect kept; unchanged when already smaller."""
    if min(width, height) <= short_side:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def to_gray8(img: Image.Image) -> Image.Image:
    """Convert a decoded image to 8-bit grayscale (``L``) as the data README specifies.

    High-bit-depth images (16-bit, 32-bit integer, float) are scaled by their own min/max to
    0..255 (rounded; a constant image becomes 0). Images with transparency are composited on
    black first. Colour images use PIL's ITU-R 601-2 luma.
    """
    mode = img.mode
    if mode in _HIGH_BIT_MODES or mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    if mode == "L":
        return img.copy()
    if mode in ("1", "P"):
        return img.convert("L")
    return img.convert("RGB").convert("L")


def encode_image(src_path: str | os.PathLike) -> tuple[Image.Image, dict[str, object]]:
    """Decode an original image and encode it as the data layout stores it.

    Returns:
        ``(image, info)``: an 8-bit ``L`` image whose shorter side is 256 px (or the original size
        when smaller: never upscaled), and ``{"orig_width", "orig_height", "orig_mode",
        "orig_format"}`` of the file as decoded. EXIF orientation is not applied (pixels as
        stored), and only the first frame of a multi-frame file is used.

    Raises:
        BuildError: the file is missing or cannot be decoded.
    """
    try:
        with Image.open(src_path) as img:
            img.seek(0)
            img.load()
            width, height = img.size
            info = {"orig_width": width, "orig_height": height, "orig_mode": img.mode,
                    "orig_format": img.format or ""}
            gray = to_gray8(img)
    except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError) as err:
        raise BuildError(f"cannot decode {src_path}: {type(err).__name__}: {err}") from None
    size = target_size(width, height)
    if size != (width, height):
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    return gray, info


def _foreground(img: Image.Image) -> np.ndarray:
    """Boolean lung mask at the mask's own size (0/1, 0/255 and 16-bit masks alike)."""
    if img.mode in _HIGH_BIT_MODES or img.mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
    else:
        arr = np.asarray(img.convert("L"), dtype=np.float64)
    top = float(arr.max()) if arr.size else 0.0
    if top <= 1.0:
        return arr > 0
    return arr > (MASK_THRESHOLD if top <= 255 else top / 2)


def encode_mask(src: str | os.PathLike | Image.Image | Sequence, size: tuple[int, int]) -> Image.Image:
    """Encode a lung mask (or the union of several, e.g. left + right lung) at ``size``.

    Each mask is binarised at its own size, the masks are merged, resized bilinearly to ``size``
    (the encoded image's ``(width, height)``) and thresholded at 127: the result is an ``L``
    image holding only 0 and 255.
    """
    sources = list(src) if isinstance(src, (list, tuple)) else [src]
    if not sources:
        raise ValueError("encode_mask needs at least one mask")
    union: np.ndarray | None = None
    for item in sources:
        if isinstance(item, Image.Image):
            fg = _foreground(item)
        else:
            try:
                with Image.open(item) as img:
                    img.load()
                    fg = _foreground(img)
            except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
                raise BuildError(f"cannot decode mask {item}: {type(err).__name__}: {err}") from None
        if union is None:
            union = fg
        else:
            if fg.shape != union.shape:
                fg = np.asarray(Image.fromarray(fg).resize(union.shape[::-1], Image.Resampling.NEAREST))
            union = union | fg
    mask = Image.fromarray(union.astype(np.uint8) * 255, mode="L")
    if mask.size != tuple(size):
        mask = mask.resize(tuple(size), Image.Resampling.BILINEAR)
    return mask.point(lambda v: 255 if v > MASK_THRESHOLD else 0)
