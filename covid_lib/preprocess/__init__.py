"""The paper's pre-processing chain (Tartaglione et al. 2020, Sec. III-B, Fig. 1), step by step.

Each step is a small pure function on 2-D numpy arrays, usable alone
(:mod:`~covid_lib.preprocess.steps`, :mod:`~covid_lib.preprocess.lungs`); :func:`preprocess_image`
is their composition (:mod:`~covid_lib.preprocess.chain`), and :func:`preprocess_source` runs it
over a whole source once and caches the result (:mod:`~covid_lib.preprocess.cache`), so that
training never decodes PNGs per epoch. Every public name is importable from this package.

The chain, in order (a :class:`Pipeline` switches steps on and off):

1. :func:`check_image` - refuse blank, uniform or tiny images (:class:`PreprocessError`).
2. :func:`equalize` - histogram equalisation, global (the paper) or CLAHE.
3. :func:`predict_lung_mask` - the U-Net of :mod:`covid_lib.models.weights` (trained on
   Montgomery and Shenzhen by :mod:`covid_lib.segment`) at its own input size; probability upsampled to the image, thresholded at 0.5,
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

from covid_lib.models.weights import DEFAULT_WEIGHTS, file_hash
from covid_lib.preprocess.cache import REJECTION_COLUMNS, cache_path, preprocess_rows, preprocess_source
from covid_lib.preprocess.chain import (
    PIPELINES,
    ChainResult,
    Pipeline,
    finish_chain,
    get_pipeline,
    load_model,
    preprocess_image,
)
from covid_lib.preprocess.lungs import (
    ImageBatch,
    iter_image_batches,
    lung_probabilities,
    predict_lung_mask,
    probability_to_mask,
    segmenter_input,
)
from covid_lib.preprocess.steps import (
    CROP_RULES,
    EQUALIZATIONS,
    FITS,
    MIN_DYNAMIC_RANGE,
    MIN_SIDE,
    PreprocessError,
    apply_mask,
    blur_mask,
    check_image,
    check_mask,
    clean_mask,
    crop_to_lungs,
    equalize,
    fit_square,
    lung_bbox,
    normalize01,
    resize,
)

__all__ = [
    "CROP_RULES", "DEFAULT_WEIGHTS", "EQUALIZATIONS", "FITS", "MIN_DYNAMIC_RANGE", "MIN_SIDE", "PIPELINES",
    "REJECTION_COLUMNS", "ChainResult", "ImageBatch", "Pipeline", "PreprocessError", "apply_mask", "blur_mask",
    "cache_path", "check_image", "check_mask", "clean_mask", "crop_to_lungs", "equalize", "file_hash",
    "finish_chain", "fit_square", "get_pipeline", "iter_image_batches", "load_model", "lung_bbox",
    "lung_probabilities", "normalize01", "predict_lung_mask", "preprocess_image", "preprocess_rows",
    "preprocess_source", "probability_to_mask", "resize", "segmenter_input",
]
