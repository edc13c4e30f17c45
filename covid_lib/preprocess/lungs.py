"""The lung U-Net inside the chain (paper Sec. III-B, step 2): its input, its batched
inference, and its probability map turned into a clean mask.

:func:`iter_image_batches` is the one batched "read, check, run the U-Net" loop of the library:
the cache (:mod:`covid_lib.preprocess.cache`), the segmentation scores
(:func:`covid_lib.segment.predict_masks`) and the chain diagnostics
(:func:`covid_lib.report.chain.chain_diagnostics`) all iterate over it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from covid_lib.data import read_image
from covid_lib.preprocess.steps import check_image, clean_mask, equalize, resize


def segmenter_input(img: np.ndarray, size: int) -> np.ndarray:
    """The U-Net's input: global equalisation, bilinear resize to ``size`` x ``size``, [0, 1] float32.

    The lung U-Net is trained on exactly this; equalising first makes its input independent of
    each source's contrast (equalising an already equalised image changes almost nothing).
    """
    eq = equalize(img, "global")
    return resize(eq, (size, size)).astype(np.float32) / 255.0


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
        model: a lung U-Net (e.g. from :func:`covid_lib.models.weights.load_unet`), in eval mode.
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


@dataclass
class ImageBatch:
    """One batch of :func:`iter_image_batches`.

    Attributes:
        records: the rows read (and checked) successfully, in manifest order.
        images: their stored pixels (2-D ``uint8``).
        probs: U-Net probabilities ``(len(images), s, s)`` at the model's input size; ``None``
            without a model.
        failed: ``(row, error)`` for each row whose reading or check raised one of ``catch``,
            in manifest order.
        read_seconds, model_seconds: time spent reading (and checking) and in the U-Net.
        done: rows consumed so far, this batch included (for progress messages).
    """

    records: list[dict]
    images: list[np.ndarray]
    probs: np.ndarray | None
    failed: list[tuple[dict, Exception]] = field(default_factory=list)
    read_seconds: float = 0.0
    model_seconds: float = 0.0
    done: int = 0

    def items(self) -> Iterator[tuple[dict, np.ndarray, np.ndarray | None]]:
        """``(row, image, probability map or None)`` for each image of the batch."""
        probs = self.probs if self.probs is not None else [None] * len(self.images)
        return zip(self.records, self.images, probs)


def iter_image_batches(
    records: Iterable[dict],
    model=None,
    *,
    read: Callable[[str], np.ndarray] | None = None,
    check: bool = True,
    catch: tuple[type[BaseException], ...] = (),
    batch_size: int = 32,
    device: str = "cpu",
) -> Iterator[ImageBatch]:
    """Read manifest rows a batch at a time and run the lung U-Net once per batch.

    The one batched inference loop of the library (chain cache, segmentation scores, chain
    diagnostics, chapter figures).

    Args:
        records: manifest rows (dicts, or a DataFrame) with ``image_path``.
        model: the lung U-Net (:func:`covid_lib.models.weights.load_unet`); ``None`` reads only.
        read: the image reader (default :func:`covid_lib.data.read_image`; tests pass a fake).
        check: pass each image through :func:`~covid_lib.preprocess.steps.check_image`.
        catch: exceptions of reading/checking that put a row in ``failed`` instead of raising.
        batch_size: rows per batch (and U-Net batch).
        device: where the U-Net runs.

    Yields:
        :class:`ImageBatch` per ``batch_size`` rows, also when all of them failed.
    """
    if read is None:
        read = read_image
    if hasattr(records, "to_dict"):
        records = records.to_dict("records")
    records = list(records)
    for start in range(0, len(records), batch_size):
        t0 = time.perf_counter()
        ok, images, failed = [], [], []
        for rec in records[start:start + batch_size]:
            try:
                img = read(rec["image_path"])
                images.append(check_image(img) if check else img)
                ok.append(rec)
            except catch as err:
                failed.append((rec, err))
        t1 = time.perf_counter()
        probs = (lung_probabilities(images, model, batch_size=batch_size, device=device)
                 if model is not None and images else None)
        yield ImageBatch(ok, images, probs, failed, t1 - t0, time.perf_counter() - t1,
                         min(start + batch_size, len(records)))
