"""What the pre-processing chain does to each image (paper Sec. III-B, Fig. 1-2; ROI crop of Ben Ahmed et al.).

:func:`chain_stages` keeps every intermediate of :mod:`covid_lib.preprocess` for one image (to
draw before/after grids); :func:`chain_diagnostics` runs the U-Net once over a manifest and
records, per image, whether the paper's chain and the ROI-crop chain accept it (and why not),
how much of the image the lung mask keeps, and what lies outside it. Every step is the library's
own (:func:`~covid_lib.preprocess.finish_chain` decides the rejections), so the counts here are
those of :func:`~covid_lib.preprocess.preprocess_source`. :func:`rows_of` and :func:`stages_of`
pick manifest rows and draw their stages; :func:`refused_crops` and :func:`crop_shortfall` say
which side of a refused ROI crop is short. The U-Net runs through the library's one batched loop,
:func:`covid_lib.preprocess.iter_image_batches`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from covid_lib.preprocess import (
    Pipeline,
    PreprocessError,
    blur_mask,
    equalize,
    finish_chain,
    fit_square,
    iter_image_batches,
    lung_bbox,
    probability_to_mask,
)
from covid_lib.report.common import SOURCE_COLORS
from covid_lib.report.masks import mask_shape

#: Stored 8-bit grey levels at or above this are "near white": burnt-in text, markers, metal.
NEAR_WHITE = 250
#: Small near-white components (text, markers, electrodes): at most this share of the image ...
MARK_MAX_AREA = 0.01
#: ... and at least this many pixels (isolated bright pixels are noise).
MARK_MIN_PIXELS = 4
#: Rejection kinds, in the order the chain checks them.
REJECTION_KINDS = ("unusable image", "empty mask", "fragmented mask", "mask too small", "mask too large",
                   "blank after masking", "crop under half")


def rejection_kind(step: str, message: str) -> str:
    """Classify a :class:`~covid_lib.preprocess.PreprocessError` by its step and message."""
    msg = message.lower()
    if step == "crop":
        return "empty mask" if "empty" in msg else "crop under half"
    if step == "mask":
        for key, kind in (("empty", "empty mask"), ("fragmented", "fragmented mask"),
                          ("too small", "mask too small"), ("too large", "mask too large")):
            if key in msg:
                return kind
        return "mask: other"
    if step == "normalize":
        return "blank after masking"
    return "unusable image"


@dataclass
class ChainStages:
    """Every intermediate of the chain for one image (``None`` where a step rejected it).

    ``original`` and ``equalised`` are at the stored resolution; ``probability`` at the U-Net's
    input size; ``mask`` at the stored resolution; ``blurred`` (soft mask), ``output`` (paper
    chain, [0, 1]) and ``crop`` (ROI-crop chain, [0, 1]) at the chain's square output size.
    ``rejected`` maps "chain" and "crop" to the reason each was refused.
    """

    original: np.ndarray
    equalised: np.ndarray
    clahe: np.ndarray
    probability: np.ndarray
    mask: np.ndarray
    blurred: np.ndarray | None
    output: np.ndarray | None
    crop: np.ndarray | None
    rejected: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def _try_chain(img: np.ndarray, pipeline: Pipeline, prob: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    try:
        return finish_chain(img, pipeline, prob).image, None
    except PreprocessError as err:
        return None, f"{rejection_kind(err.step, str(err))}: {err}"


def chain_stages(img: np.ndarray, prob: np.ndarray, pipeline: Pipeline) -> ChainStages:
    """The chain of ``pipeline`` (its ``crop`` setting ignored) on ``img``, every step kept.

    ``prob`` is the U-Net probability map of ``img`` (:func:`covid_lib.preprocess.lung_probabilities`).
    The outputs are :func:`~covid_lib.preprocess.finish_chain`'s, run once without and once with
    the ROI crop.
    """
    p = replace(pipeline, mask=True, crop=False)
    eq = equalize(img, p.equalization)
    mask, kept = probability_to_mask(prob, img.shape)
    output, why = _try_chain(img, p, prob)
    crop, why_crop = (None, why) if why else _try_chain(img, replace(p, crop=True), prob)
    blurred = None
    if mask.any():
        square = fit_square(mask.astype(np.float32), p.image_size, p.fit) >= 0.5
        blurred = blur_mask(square, p.blur_radius)
    info = {"mask_area": float(mask.mean()), "mask_kept": kept}
    if mask.any():
        top, bottom, left, right = lung_bbox(mask)
        info.update(crop_height=(bottom - top) / mask.shape[0], crop_width=(right - left) / mask.shape[1])
    return ChainStages(img, eq, equalize(img, "clahe"), np.asarray(prob), mask, blurred, output, crop,
                       {"chain": why, "crop": why_crop}, info)


def diagnose_image(img: np.ndarray, prob: np.ndarray, pipeline: Pipeline) -> dict:
    """One image's row of :func:`chain_diagnostics` (``img``: stored uint8, ``prob``: U-Net map)."""
    p = replace(pipeline, mask=True, crop=False)
    mask, kept = probability_to_mask(prob, img.shape)
    row: dict = {"mask_area": float(mask.mean()), "mask_kept": float(kept), "crop_height": np.nan,
                 "crop_width": np.nan}
    if mask.any():
        top, bottom, left, right = lung_bbox(mask)
        row.update(crop_height=(bottom - top) / mask.shape[0], crop_width=(right - left) / mask.shape[1])
    row.update(mask_shape(mask))
    row["chain_rejection"], row["crop_rejection"] = "", ""
    for key, pipe in (("chain_rejection", p), ("crop_rejection", replace(p, crop=True))):
        try:
            finish_chain(img, pipe, prob)
        except PreprocessError as err:
            row[key] = rejection_kind(err.step, str(err))
            row[key.replace("rejection", "reason")] = str(err)
            break  # an image the chain refuses is not cropped either
    imgf = img.astype(np.float32)
    white = img >= NEAR_WHITE
    marks = small_marks(white)
    row["mean_inside"] = float(imgf[mask].mean()) if mask.any() else np.nan
    row["mean_outside"] = float(imgf[~mask].mean()) if (~mask).any() else np.nan
    row["near_white_outside"] = float((white & ~mask).mean())
    row["near_white_inside"] = float((white & mask).mean())
    row["marks_outside"] = float((marks & ~mask).mean())
    row["marks_inside"] = float((marks & mask).mean())
    return row


def small_marks(white: np.ndarray, max_area: float = MARK_MAX_AREA, min_pixels: int = MARK_MIN_PIXELS) -> np.ndarray:
    """The near-white connected components of ``white`` that are small enough to be letters,
    markers or electrodes: at least ``min_pixels`` and at most ``max_area`` of the image
    (large near-white regions are saturated body parts, borders or collimation)."""
    from scipy import ndimage

    labels, n = ndimage.label(white)
    if n == 0:
        return np.zeros(white.shape, bool)
    sizes = np.bincount(labels.ravel())
    small = (sizes >= min_pixels) & (sizes <= max_area * white.size)
    small[0] = False
    return small[labels]


def _ids(rec: dict) -> dict:
    return {k: rec.get(k) for k in ("image_id", "source", "view", "patient_id", "covid")}


def chain_diagnostics(manifest: pd.DataFrame, model, pipeline: Pipeline, *, batch_size: int = 32,
                      device: str = "cpu", read=None) -> pd.DataFrame:
    """Run the U-Net once over ``manifest`` and diagnose every image (:func:`diagnose_image`).

    Returns:
        One row per manifest row (``image_id``, ``source``, ``view``, ``patient_id`` and):
        ``mask_area`` (share of the image the mask keeps), ``mask_kept`` (share of the raw
        prediction in the two largest components), ``crop_height``/``crop_width`` (lung bounding
        box over the image's), ``chain_rejection`` and ``crop_rejection`` (a kind of
        :data:`REJECTION_KINDS`, "" when accepted) with ``*_reason`` (the library's message),
        ``mean_inside``/``mean_outside`` (mean stored grey level in and out of the mask) and
        ``near_white_outside``/``near_white_inside`` (share of the image that is near white,
        >= :data:`NEAR_WHITE`, out of and in the mask) and ``marks_outside``/``marks_inside``
        (the same for the small near-white components of :func:`small_marks`: text, markers),
        ``covid`` (the label, NaN where the source has none) and the
        :func:`covid_lib.report.masks.mask_shape` columns (``components``, ``side_balance``,
        ``one_lung``, ...).
    """
    rows = []
    batches = iter_image_batches(manifest, model, read=read, catch=(PreprocessError, OSError, ValueError),
                                 batch_size=batch_size, device=device)
    for batch in batches:
        for rec, err in batch.failed:
            rows.append({**_ids(rec), "chain_rejection": "unusable image", "chain_reason": str(err),
                         "crop_rejection": ""})
        for rec, img, prob in batch.items():
            rows.append({**_ids(rec), **diagnose_image(img, prob, pipeline)})
    out = pd.DataFrame(rows)
    for col in ("chain_reason", "crop_reason"):
        if col not in out:
            out[col] = ""
    return out.fillna({"chain_reason": "", "crop_reason": "", "chain_rejection": "", "crop_rejection": ""})


def rejection_counts(diag: pd.DataFrame) -> pd.DataFrame:
    """Per source: images, each rejection kind, and how many the paper chain and the crop chain keep."""
    order = list(dict.fromkeys(diag["source"]))
    table = pd.DataFrame(index=pd.Index(order, name="source"))
    table["images"] = diag.groupby("source").size()
    for kind in REJECTION_KINDS:
        column = "crop_rejection" if kind == "crop under half" else "chain_rejection"
        counts = diag[diag[column] == kind].groupby("source").size()
        if counts.sum() or kind in ("empty mask", "fragmented mask", "crop under half"):
            table[kind] = counts.reindex(order, fill_value=0)
    table["kept by the paper chain"] = diag[diag["chain_rejection"] == ""].groupby("source").size().reindex(order, fill_value=0)
    kept_crop = diag[(diag["chain_rejection"] == "") & (diag["crop_rejection"] == "")].groupby("source").size()
    table["kept with the ROI crop"] = kept_crop.reindex(order, fill_value=0)
    table.loc["all"] = table.sum()
    return table.astype(int)


def area_summary(diag: pd.DataFrame) -> pd.DataFrame:
    """Per source: the share of the image the mask keeps, mean grey level inside and outside it, and
    the near-white pixels (text, markers, metal) that lie outside the lungs and are removed, and
    the share of images with small near-white marks (:func:`small_marks`) outside and inside the mask."""
    ok = diag[diag["mask_area"].notna()]
    g = ok.groupby("source", sort=False)
    white_total = ok["near_white_outside"] + ok["near_white_inside"]
    removed = (ok["near_white_outside"].groupby(ok["source"], sort=False).sum()
               / white_total.groupby(ok["source"], sort=False).sum().replace(0, np.nan))
    out = pd.DataFrame({
        "images": g.size(),
        "area kept, median %": g["mask_area"].median() * 100,
        "area kept, IQR %": [f"{a * 100:.0f}-{b * 100:.0f}" for a, b in
                             zip(g["mask_area"].quantile(0.25), g["mask_area"].quantile(0.75))],
        "grey level inside": g["mean_inside"].mean(),
        "grey level outside": g["mean_outside"].mean(),
        "near-white % of image": (g["near_white_outside"].mean() + g["near_white_inside"].mean()) * 100,
        "near-white removed %": removed * 100,
        "images with marks outside %": g["marks_outside"].apply(lambda v: (v > 0).mean() * 100),
        "images with marks inside %": g["marks_inside"].apply(lambda v: (v > 0).mean() * 100),
    })
    return out.round(1)


def refused_crops(diag: pd.DataFrame, min_fraction: float) -> pd.DataFrame:
    """The images the ROI crop refuses (``crop_rejection == "crop under half"``), with which
    side is short: ``height``/``width`` (bool: under ``min_fraction`` of the image's) and
    ``side`` (the shorter of ``crop_height`` and ``crop_width``)."""
    cropped = diag[diag["crop_rejection"] == "crop under half"]
    return cropped.assign(height=cropped["crop_height"] < min_fraction,
                          width=cropped["crop_width"] < min_fraction,
                          side=cropped[["crop_height", "crop_width"]].min(axis=1))


def crop_shortfall(refused: pd.DataFrame) -> pd.DataFrame:
    """Per source, of the :func:`refused_crops`: how many, how many are short in height and in
    width, and the median and minimum of the shorter side (share of the image's)."""
    return refused.groupby("source").agg(refused=("side", "size"), height_under_half=("height", "sum"),
                                         width_under_half=("width", "sum"),
                                         shorter_side_median=("side", "median"),
                                         shorter_side_min=("side", "min")).round(2)


def rows_of(keys: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """The ``manifest`` rows of ``keys`` (``source``, ``image_id``), in the order of ``keys``
    (image ids repeat across sources, so both columns are matched)."""
    return keys[["source", "image_id"]].merge(manifest, on=["source", "image_id"], how="inner")


def stages_of(rows: pd.DataFrame, model, pipeline: Pipeline, *, with_source: bool = True,
              batch_size: int = 32, device: str = "cpu", read=None) -> list[tuple[str, ChainStages]]:
    """:func:`chain_stages` of manifest rows, each labelled ``"source · id · view"`` (the id cut
    to 32 characters; ``with_source=False`` drops the source), for :func:`plot_chain_grid`."""
    out = []
    for batch in iter_image_batches(rows, model, read=read, check=False, batch_size=batch_size,
                                    device=device):
        for rec, img, prob in batch.items():
            label = (f"{rec['source']} · " if with_source else "") + f"{rec['image_id'][:32]} · {rec['view']}"
            out.append((label, chain_stages(img, prob, pipeline)))
    return out


# ----------------------------------------------------------------------------- figures
_COLUMN_TITLES = {
    "original": "stored image", "equalised": "equalised", "clahe": "CLAHE (option, not used)",
    "probability": "U-Net probability", "mask": "lung mask", "blurred": "blurred mask",
    "output": "masked, [0, 1]", "crop": "ROI crop, [0, 1]",
}


def _draw(ax, stages: ChainStages, column: str, fontsize: int = 8) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if column == "mask":
        ax.imshow(stages.equalised, cmap="gray", vmin=0, vmax=255)
        if stages.mask.any():
            tint = np.zeros((*stages.mask.shape, 4), np.float32)
            tint[stages.mask] = (1.0, 0.85, 0.0, 0.35)
            ax.imshow(tint)
            ax.contour(stages.mask, levels=[0.5], colors=["#ffcc00"], linewidths=0.9)
        return
    if column == "probability":
        ax.imshow(stages.probability, cmap="viridis", vmin=0, vmax=1)
        return
    value = getattr(stages, column)
    if value is None:
        ax.set_facecolor("#f3f3f3")
        reason = stages.rejected.get("crop" if column == "crop" else "chain") or "not computed"
        kind, _, detail = reason.partition(": ")
        ax.text(0.5, 0.55, "rejected", color="#d62728", ha="center", va="center", fontsize=fontsize + 1,
                fontweight="bold", transform=ax.transAxes)
        ax.text(0.5, 0.38, kind, color="#d62728", ha="center", va="center", fontsize=fontsize,
                transform=ax.transAxes, wrap=True)
        return
    if column in ("output", "crop", "blurred"):
        ax.imshow(value, cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(value, cmap="gray", vmin=0, vmax=255)


def plot_chain(stages: ChainStages, *, title: str | None = None, pipeline: Pipeline | None = None) -> Figure:
    """Every step of the chain for one image, in two rows of four (the paper's Fig. 1-2)."""
    columns = ("original", "equalised", "clahe", "probability", "mask", "blurred", "output", "crop")
    labels = dict(_COLUMN_TITLES)
    if pipeline is not None:
        labels["equalised"] = f"1. equalised ({pipeline.equalization})"
        labels["probability"] = f"2. U-Net probability ({stages.probability.shape[0]} px)"
        labels["mask"] = f"3. mask at {stages.mask.shape[1]}x{stages.mask.shape[0]} px"
        labels["blurred"] = f"4. blurred, sigma {pipeline.blur_radius:g} px at {pipeline.image_size} px"
        labels["output"] = f"5. masked, [0, 1], {pipeline.image_size} px"
        labels["crop"] = "option: ROI crop (Ben Ahmed)"
    fig = Figure(figsize=(12, 6.6), layout="constrained")
    axes = fig.subplots(2, 4)
    for ax, col in zip(axes.ravel(), columns):
        _draw(ax, stages, col)
        ax.set_title(labels[col], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_chain_grid(rows: Sequence[tuple[str, ChainStages]],
                    columns: Sequence[str] = ("original", "equalised", "mask", "output", "crop"), *,
                    size: float = 2.2, title: str | None = None, color: str | None = None,
                    transpose: bool = False) -> Figure:
    """Before/after grid: one row per image (labelled), one column per chain step
    (``transpose``: one column per image, one row per step).

    A step that rejected the image shows "rejected" and the kind of rejection.
    """
    n = max(len(rows), 1)
    shape = (len(columns), n) if transpose else (n, len(columns))
    fig = Figure(figsize=(size * shape[1] + 0.8, size * 1.05 * shape[0] + 0.5), layout="constrained")
    axes = fig.subplots(*shape, squeeze=False)
    if not rows:
        for ax in axes.ravel():
            ax.set_axis_off()
    for r, (label, stages) in enumerate(rows):
        for c, col in enumerate(columns):
            ax = axes[c, r] if transpose else axes[r, c]
            _draw(ax, stages, col)
            if color:
                for spine in ax.spines.values():
                    spine.set_color(color)
                    spine.set_linewidth(1.5)
            if transpose:
                if r == 0:
                    ax.set_ylabel(_COLUMN_TITLES.get(col, col), fontsize=9)
                if c == 0:
                    ax.set_title(label, fontsize=7)
            else:
                if r == 0:
                    ax.set_title(_COLUMN_TITLES.get(col, col), fontsize=9)
                if c == 0:
                    ax.set_ylabel(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10, color=color or "black")
    return fig


def plot_area_kept(diag: pd.DataFrame) -> Figure:
    """Per source: the share of the image the lung mask keeps, and the mean grey level inside
    and outside the mask (stored 8-bit image)."""
    ok = diag[diag["mask_area"].notna()]
    sources = list(dict.fromkeys(ok["source"]))
    fig = Figure(figsize=(11, 0.45 * len(sources) + 1.6), layout="constrained")
    ax_a, ax_i = fig.subplots(1, 2, sharey=True)
    for k, s in enumerate(sources):
        part = ok[ok["source"] == s]
        color = SOURCE_COLORS.get(s, "#7f7f7f")
        ax_a.boxplot([part["mask_area"] * 100], positions=[k], orientation="horizontal", widths=0.55,
                     patch_artist=True, boxprops={"facecolor": color, "alpha": 0.6},
                     flierprops={"markersize": 2}, medianprops={"color": "black"})
        for offset, col, marker in ((-0.15, "mean_inside", "o"), (0.15, "mean_outside", "s")):
            vals = part[col].dropna()
            ax_i.boxplot([vals], positions=[k + offset], orientation="horizontal", widths=0.25,
                         patch_artist=True, showfliers=False, medianprops={"color": "black"},
                         boxprops={"facecolor": color, "alpha": 0.85 if col == "mean_inside" else 0.3})
    ax_a.set_yticks(range(len(sources)), sources)
    ax_a.invert_yaxis()
    ax_a.set_xlabel("lung mask, % of the image")
    ax_a.set_title("how much of the image the mask keeps", fontsize=10)
    ax_i.set_xlabel("mean stored grey level (0-255)")
    ax_i.set_title("inside the mask (dark box) vs outside (light box)", fontsize=10)
    for ax in (ax_a, ax_i):
        ax.grid(axis="x", alpha=0.3)
    return fig


__all__ = [
    "NEAR_WHITE", "MARK_MAX_AREA", "MARK_MIN_PIXELS", "REJECTION_KINDS", "small_marks", "rejection_kind", "ChainStages", "chain_stages", "diagnose_image",
    "chain_diagnostics", "rejection_counts", "area_summary", "refused_crops", "crop_shortfall", "rows_of",
    "stages_of", "plot_chain", "plot_chain_grid", "plot_area_kept",
]
