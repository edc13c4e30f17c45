"""Every image of a source through the chain once, cached on disk (paper Sec. III-B).

The cache file is ``cache_dir("preprocess")/<pipeline hash>/<source>-<manifest hash>.npz``, so
training never decodes PNGs per epoch; nothing is dropped silently (every image left out is in
the rejections table, with its step and reason).
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from covid_lib.data import data_version, load_source
from covid_lib.data.sources import ImageReadError
from covid_lib.paths import cache_dir
from covid_lib.preprocess.chain import Pipeline, finish_chain, get_pipeline, load_model
from covid_lib.preprocess.lungs import iter_image_batches
from covid_lib.preprocess.steps import PreprocessError

REJECTION_COLUMNS = ["image_id", "source", "patient_id", "step", "reason"]


def cache_path(name: str, pipeline: Pipeline, data_root=None) -> Path:
    """Where :func:`preprocess_source` caches ``name`` under ``pipeline``:
    ``cache_dir("preprocess")/<pipeline hash>/<source>-<data version of that source>.npz`` (an
    edited or replaced image gives a new version, so a stale cache is never read)."""
    return cache_dir("preprocess") / pipeline.hash / f"{name}-{data_version(data_root, sources=[name])}.npz"


def _rejection(row, step: str, reason: str) -> dict:
    return {"image_id": row["image_id"], "source": row["source"], "patient_id": row["patient_id"],
            "step": step, "reason": reason}


def _compute_source(manifest: pd.DataFrame, pipeline: Pipeline, *, model=None, batch_size: int = 32,
                    device: str = "cpu", progress: bool = False) -> dict:
    """Run the chain over every manifest row; returns arrays and tables for the cache."""
    p = pipeline
    if p.uses_model and model is None:
        model = load_model(p, device)
    size = p.image_size
    images, masks, rows, rejected = [], [], [], []
    timings = {"read": 0.0, "model": 0.0, "chain": 0.0}
    batches = iter_image_batches(manifest, model if p.uses_model else None, batch_size=batch_size,
                                 device=device, catch=(ImageReadError, PreprocessError))
    for batch in batches:
        for rec, err in batch.failed:
            step = "read" if isinstance(err, ImageReadError) else err.step
            rejected.append(_rejection(rec, step, str(err)))
        t2 = time.perf_counter()
        for rec, img, prob in batch.items():
            try:
                res = finish_chain(img, p, prob)
            except PreprocessError as err:
                rejected.append(_rejection(rec, err.step, str(err)))
                continue
            images.append(np.round(res.image * 255).astype(np.uint8))
            masks.append(res.mask if res.mask is not None else np.ones((size, size), bool))
            rows.append({"image_id": rec["image_id"], "source": rec["source"], "patient_id": rec["patient_id"],
                         **res.info})
        timings["read"] += batch.read_seconds
        timings["model"] += batch.model_seconds
        timings["chain"] += time.perf_counter() - t2
        if progress:
            print(f"  {p.name}/{manifest['source'].iat[0]}: {batch.done}/{len(manifest)}", flush=True)
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
                    batch_size: int = 32, device: str = "cpu", return_masks: bool = False):
    """The chain on these manifest rows only, not cached: for small subsets (smoke runs).

    Returns:
        ``(images, index, rejections)`` as :func:`preprocess_source` (``index`` holds only the
        ids and the chain's diagnostics); every row is either in ``index`` or in ``rejections``.
        With ``return_masks`` also the binary lung masks at the output size.
    """
    result = _compute_source(manifest.reset_index(drop=True), get_pipeline(pipeline).resolved(), model=model,
                             batch_size=batch_size, device=device)
    out = (result["images"], result["index"], result["rejections"])
    return (*out, result["masks"]) if return_masks else out


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
