"""Planted confounders: marks burnt into *raw* images before the chain (a controlled shortcut).

Tartaglione et al. 2020 (Sec. III-B) argue that their chain (histogram equalisation, U-Net lung
mask blurred by 3 px) removes source "biases" such as markers and borders. With real sources the
bias is unknown; a mark we plant ourselves is known exactly, so one can measure which step of the
chain removes it and whether a CNN learns it (:mod:`covid_lib.analysis.planted`). Two marks
(:data:`MARKS`):

- ``corner``: a bright "L" glyph (the burnt-in side marker of many radiographs) in the top-left
  corner, outside the lungs, sized relative to the image's shorter side. Its margin exceeds
  what the classifier's centre crop removes (``cpu``: 144 -> 128 px, 5.6% per side) so that the
  crop cannot remove it for the chain.
- ``gamma``: a global gamma curve on the whole image (``255 (x/255)^gamma``): the contrast of
  another scanner or another export. Monotone, so global histogram equalisation, which keeps only
  the ranks of the grey levels, should undo it up to rounding.

Marks are pure functions of the image (deterministic, no randomness).

Example:
    >>> import numpy as np
    >>> img = np.full((100, 80), 60, np.uint8)
    >>> marked = apply_mark(img, "corner")
    >>> region = mark_region(img.shape, "corner")
    >>> int(marked[region].min()), int(marked[~region].max()), int(region.sum())  # 12 px "L", 4 px strokes
    (255, 60, 80)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from covid_lib.data.sources import ImageReadError, read_image
from covid_lib.preprocess.chain import finish_chain, get_pipeline, load_model
from covid_lib.preprocess.lungs import iter_image_batches
from covid_lib.preprocess.steps import PreprocessError, fit_square

MARK_KINDS = ("corner", "gamma")


@dataclass(frozen=True)
class Mark:
    """A planted mark.

    Attributes:
        name: its key in :data:`MARKS`.
        kind: ``"corner"`` (an "L" glyph) or ``"gamma"`` (a global gamma curve).
        size: glyph side as a share of the image's shorter side (``corner``).
        margin: distance of the glyph from the top and left edges, same unit (``corner``).
        stroke: stroke width as a share of the glyph side (``corner``).
        value: the glyph's grey level (``corner``; 255 = burnt-in white).
        gamma: the exponent (``gamma``; < 1 brightens).
    """

    name: str
    kind: str
    size: float = 0.15
    margin: float = 0.08
    stroke: float = 0.3
    value: int = 255
    gamma: float = 0.6

    def __post_init__(self) -> None:
        if self.kind not in MARK_KINDS:
            raise ValueError(f"mark kind must be one of {MARK_KINDS}, got {self.kind!r}")
        if not (0 < self.size and 0 <= self.margin and self.size + self.margin <= 0.5):
            raise ValueError(f"mark {self.name!r}: need 0 < size, 0 <= margin, size + margin <= 0.5")
        if not 0 < self.stroke <= 1 or not 0 <= self.value <= 255 or not self.gamma > 0:
            raise ValueError(f"mark {self.name!r}: stroke in (0, 1], value in [0, 255], gamma > 0")

    def glyph_box(self, shape: tuple[int, int]) -> tuple[int, int, int]:
        """``(top, left, side)`` of the glyph in an image of ``shape`` (at least 3 px a side)."""
        short = min(shape)
        side = max(3, round(self.size * short))
        off = round(self.margin * short)
        return off, off, side


#: The registry of planted marks.
MARKS: dict[str, Mark] = {m.name: m for m in (Mark("corner", "corner"), Mark("gamma", "gamma"))}


def get_mark(mark: str | Mark) -> Mark:
    """A mark of :data:`MARKS` by name (a :class:`Mark` passes through)."""
    if isinstance(mark, Mark):
        return mark
    if mark not in MARKS:
        raise ValueError(f"unknown mark {mark!r}; choose from {', '.join(MARKS)}")
    return MARKS[mark]


def mark_region(shape: tuple[int, int], mark: str | Mark) -> np.ndarray:
    """Boolean (H, W) map of the pixels ``mark`` sets: the "L" glyph's strokes (``corner``), the
    whole image (``gamma``)."""
    m = get_mark(mark)
    h, w = shape
    region = np.zeros((h, w), bool)
    if m.kind == "gamma":
        region[:] = True
        return region
    top, left, side = m.glyph_box(shape)
    width = max(1, round(m.stroke * side))
    region[top:top + side, left:left + width] = True  # the L's upright
    region[top + side - width:top + side, left:left + side] = True  # its foot
    return region


def apply_mark(img: np.ndarray, mark: str | Mark) -> np.ndarray:
    """``img`` (2-D ``uint8``) with ``mark`` planted; a new array, the input is not changed."""
    m = get_mark(mark)
    img = np.asarray(img)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"marks apply to 2-D uint8 raw images, got {img.dtype} {img.shape}")
    if m.kind == "gamma":
        lut = np.round(255.0 * (np.arange(256) / 255.0) ** m.gamma).astype(np.uint8)
        return lut[img]
    out = img.copy()
    out[mark_region(img.shape, m)] = m.value
    return out


# ---------------------------------------------------------------------- marked images through the chain
@dataclass
class MarkedImages:
    """Rows through the chain, each marked or not (:func:`preprocess_marked`).

    Attributes:
        images: ``uint8`` (N, S, S), the chain's [0, 1] output times 255 (zeros where rejected).
        ok: ``bool`` (N,): the row passed the chain.
        marked: ``bool`` (N,): the mark was planted on the raw image before the chain.
        regions: ``bool`` (N, S, S): the mark's pixels carried through the chain's geometry (crop,
            pad, resize); all False for unmarked rows and where the crop cut the mark away.
        rejections: ``image_id, source, step, reason`` of each rejected row.
        seconds: wall time (reading, marking, U-Net, chain): the cost of not using the cache.
    """

    images: np.ndarray
    ok: np.ndarray
    marked: np.ndarray
    regions: np.ndarray
    rejections: pd.DataFrame
    seconds: float


def region_after_chain(region: np.ndarray, pipeline, bbox: str | None = None) -> np.ndarray:
    """A raw-image boolean map through the chain's geometry: the lung crop (``bbox`` as the
    chain's ``info["bbox"]``, ``"top,bottom,left,right"``), then :func:`fit_square` to the output
    side (a pixel is in the region when at least half of it was)."""
    r = np.asarray(region, np.float32)
    if bbox:
        top, bottom, left, right = map(int, bbox.split(","))
        r = r[top:bottom, left:right]
    return fit_square(r, pipeline.image_size, pipeline.fit) >= 0.5


def preprocess_marked(rows: pd.DataFrame, pipeline, mark: str | Mark, marked, *, model=None, device: str = "cpu",
                      batch_size: int = 32, read=None) -> MarkedImages:
    """The whole chain on ``rows`` (manifest rows with ``image_path``), planting ``mark`` on the
    raw image of each row where ``marked`` is True, before the chain (so the U-Net sees it too).

    Not cached: the pre-processing cache holds unmarked images only. Deterministic: an unmarked
    row gives the output of :func:`covid_lib.preprocess.preprocess_rows`. ``read`` replaces
    :func:`covid_lib.data.read_image` (tests pass a fake).
    """
    return preprocess_marked_steps(rows, {"step": pipeline}, mark, marked, model=model, device=device,
                                   batch_size=batch_size, read=read)["step"]


def preprocess_marked_steps(rows: pd.DataFrame, pipelines: dict, mark: str | Mark, marked, *, model=None,
                            device: str = "cpu", batch_size: int = 32, read=None) -> dict[str, MarkedImages]:
    """:func:`preprocess_marked` for several pipelines (step name -> pipeline) at once: each raw
    image is read, marked and passed through the U-Net once, shared by every step (``seconds`` is
    the shared total)."""
    import time

    if read is None:
        read = read_image

    t0 = time.perf_counter()
    pipes = {k: get_pipeline(v).resolved() for k, v in pipelines.items()}
    uses_model = any(p.uses_model for p in pipes.values())
    m = get_mark(mark)
    rows = rows.reset_index(drop=True)
    marked = np.asarray(marked, bool)
    if len(marked) != len(rows):
        raise ValueError(f"{len(marked)} marked flags for {len(rows)} rows")
    n = len(rows)
    images = {k: np.zeros((n, p.image_size, p.image_size), np.uint8) for k, p in pipes.items()}
    regions = {k: np.zeros((n, p.image_size, p.image_size), bool) for k, p in pipes.items()}
    ok = {k: np.zeros(n, bool) for k in pipes}
    rejected: dict[str, list] = {k: [] for k in pipes}
    if uses_model and model is None and n:
        model = load_model(next(p for p in pipes.values() if p.uses_model), device)
    for flag in (False, True):
        idx = np.flatnonzero(marked == flag)
        if not len(idx):
            continue
        recs = rows.iloc[idx].assign(_row=idx).to_dict("records")
        reader = (lambda path: apply_mark(read(path), m)) if flag else read
        for batch in iter_image_batches(recs, model if uses_model else None, read=reader, batch_size=batch_size,
                                        device=device, catch=(ImageReadError, PreprocessError)):
            for rec, err in batch.failed:
                for k in pipes:
                    rejected[k].append({"image_id": str(rec["image_id"]), "source": rec["source"],
                                        "step": getattr(err, "step", "read"), "reason": str(err)})
            for rec, img, prob in batch.items():
                i = rec["_row"]
                for k, p in pipes.items():
                    try:
                        res = finish_chain(img, p, prob if p.uses_model else None)
                    except PreprocessError as err:
                        rejected[k].append({"image_id": str(rec["image_id"]), "source": rec["source"],
                                            "step": err.step, "reason": str(err)})
                        continue
                    images[k][i], ok[k][i] = np.round(res.image * 255).astype(np.uint8), True
                    if flag:
                        regions[k][i] = region_after_chain(mark_region(img.shape, m), p, res.info.get("bbox"))
    seconds = time.perf_counter() - t0
    cols = ["image_id", "source", "step", "reason"]
    return {k: MarkedImages(images[k], ok[k], marked, regions[k], pd.DataFrame(rejected[k], columns=cols), seconds)
            for k in pipes}
