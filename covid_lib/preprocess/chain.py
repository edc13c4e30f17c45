"""The chain as one configuration (:class:`Pipeline`, named in :data:`PIPELINES`) and its
composition on one image (:func:`finish_chain`, :func:`preprocess_image`); paper Sec. III-B.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from covid_lib.models.weights import DEFAULT_WEIGHTS, file_hash, load_unet
from covid_lib.preprocess.lungs import lung_probabilities, probability_to_mask
from covid_lib.preprocess.steps import (
    CROP_RULES,
    EQUALIZATIONS,
    FITS,
    MIN_SIDE,
    PreprocessError,
    apply_mask,
    blur_mask,
    check_image,
    check_mask,
    crop_to_lungs,
    equalize,
    fit_square,
    normalize01,
)


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
        model = model if model is not None else load_model(p)
        prob = lung_probabilities([img], model)[0]
    return finish_chain(img, p, prob)


def load_model(pipeline: Pipeline, device: str = "cpu"):
    """The lung U-Net of ``pipeline`` (its ``weights``, default the committed checkpoint)."""
    return load_unet(pipeline.weights_path, device=device)
