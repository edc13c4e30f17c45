"""Scoring the lung U-Net (Sec. III-B): our masks beside the reference masks, Dice/IoU per image,
held-out Montgomery/Shenzhen patients and Cohen's V7 masks out of domain.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from covid_lib.data import read_image
from covid_lib.preprocess import iter_image_batches, probability_to_mask, resize
from covid_lib.segment.data import cohen_manifest, segmentation_manifest
from covid_lib.segment.metrics import dice_iou, summarize


def predict_masks(model, manifest: pd.DataFrame, *, batch_size: int = 32, device: str = "cpu",
                  read=None) -> list[dict]:
    """Our lung mask beside the reference mask of each row (``image_path``, ``mask_path``).

    The prediction is the chain's (:func:`covid_lib.preprocess.iter_image_batches`, then
    :func:`~covid_lib.preprocess.probability_to_mask` at the stored image's resolution); one U-Net
    pass serves both the scores (:func:`score_masks`) and the figures drawn from the masks.

    Args:
        read: the image reader (default :func:`covid_lib.data.read_image`; tests pass a fake).

    Returns:
        One dict per row, in order: ``image_id``, ``patient_id``, ``source``, ``view`` (when the
        manifest has them), ``image`` (uint8), ``prob`` (model-size probabilities), ``ref`` and
        ``pred`` (bool, image size).
    """
    if read is None:
        read = read_image
    out = []
    for batch in iter_image_batches(manifest, model, read=read, check=False, batch_size=batch_size,
                                    device=device):
        for rec, img, prob in batch.items():
            ref = read(rec["mask_path"]) > 127
            pred, _ = probability_to_mask(prob, ref.shape)
            ids = {k: rec.get(k) for k in ("image_id", "patient_id", "source", "view")}
            out.append({**ids, "image": img, "prob": prob, "ref": ref, "pred": pred})
    return out


def score_masks(masks: list[dict]) -> pd.DataFrame:
    """Per-image Dice/IoU of :func:`predict_masks` output: at the model resolution (``dice_model``,
    raw threshold) and at the stored mask resolution after the chain's post-processing
    (``dice``, ``iou``: the headline), plus ``coverage`` (share of the reference mask covered)
    and ``precision`` (share of our mask inside the reference)."""
    rows = []
    for m in masks:
        prob, ref, pred = m["prob"], m["ref"], m["pred"]
        ref_small = resize(ref.astype(np.float32), prob.shape) >= 0.5
        d_model, i_model = dice_iou(prob > 0.5, ref_small)
        dice, iou = dice_iou(pred, ref)
        inter = float(np.logical_and(pred, ref).sum())
        rows.append({"image_id": m["image_id"], "patient_id": m["patient_id"], "source": m["source"],
                     "view": m["view"], "dice": dice, "iou": iou, "dice_model": d_model,
                     "iou_model": i_model, "coverage": inter / max(ref.sum(), 1),
                     "precision": inter / max(pred.sum(), 1), "pred_area": float(pred.mean()),
                     "ref_area": float(ref.mean())})
    return pd.DataFrame(rows)


def score_images(model, manifest: pd.DataFrame, *, batch_size: int = 32, device: str = "cpu") -> pd.DataFrame:
    """Per-image scores (:func:`score_masks`) of the rows with ``mask_path``, a batch at a time."""
    parts = [score_masks(predict_masks(model, manifest.iloc[s:s + batch_size], batch_size=batch_size,
                                       device=device))
             for s in range(0, len(manifest), batch_size)]
    return pd.concat(parts, ignore_index=True) if parts else score_masks([])


def evaluate(model, data_root=None, *, split: dict | None = None,
             device: str = "cpu") -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Held-out Montgomery/Shenzhen scores and out-of-domain Cohen V7 scores.

    Args:
        split: ``seed``, ``test_fraction``, ``val_fraction`` of the training split (the
            checkpoint's ``meta["split"]``), so that the held-out patients are the same.

    Returns:
        ``(summary, held_out_scores, cohen_scores)``: the summary (see :func:`summarize`; plus the
        held-out image ids) and the per-image tables of :func:`score_images`.
    """
    split = split or {}
    manifest = segmentation_manifest(data_root, seed=split.get("seed", 0),
                                     test_fraction=split.get("test_fraction", 0.2),
                                     val_fraction=split.get("val_fraction", 0.15))
    test = manifest[manifest["split"] == "test"]
    held = score_images(model, test, device=device)
    cohen = score_images(model, cohen_manifest(data_root), device=device)
    result = {"held_out": summarize(held, ("dice", "iou", "dice_model", "iou_model")),
              "held_out_by_source": {s: summarize(g, ("dice", "iou")) for s, g in held.groupby("source")},
              "cohen_v7": summarize(cohen, ("dice", "iou", "coverage", "precision")),
              "held_out_ids": sorted(test["image_id"])}
    return result, held, cohen


def _fmt(summary: dict, col: str) -> str:
    s = summary[col]
    return f"{s['mean']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}] (median {s['median']:.4f}, min {s['min']:.4f})"


def format_report(result: dict) -> str:
    """The :func:`evaluate` summary as the text that ``segment eval`` prints."""
    h, c = result["held_out"], result["cohen_v7"]
    lines = [
        f"Held-out Montgomery+Shenzhen ({h['n_images']} images, {h['n_patients']} patients); {h['ci']}",
        f"  Dice (stored 256-px masks, post-processed; headline): {_fmt(h, 'dice')}",
        f"  IoU  (stored 256-px masks, post-processed):           {_fmt(h, 'iou')}",
        f"  Dice (model resolution, raw threshold):               {_fmt(h, 'dice_model')}",
        f"  IoU  (model resolution, raw threshold):               {_fmt(h, 'iou_model')}",
    ]
    for src, s in result.get("held_out_by_source", {}).items():
        lines.append(f"  {src:<11} n={s['n_images']:>3}  Dice {_fmt(s, 'dice')}")
    lines += [
        f"Cohen COVID-19 frontal images with V7 masks ({c['n_images']} images, {c['n_patients']} patients), out of domain",
        f"  Dice:      {_fmt(c, 'dice')}",
        f"  IoU:       {_fmt(c, 'iou')}",
        f"  Coverage (share of the V7 mask inside ours): {_fmt(c, 'coverage')}",
        f"  Precision (share of ours inside the V7 mask): {_fmt(c, 'precision')}",
        "  Precision near 1 with coverage < 1: our masks lie inside V7's but miss part of it, for two",
        "  reasons: V7 masks include the lung behind the heart (Montgomery/Shenzhen masks, hence ours,",
        "  stop at the heart border), and dense consolidation is missed by a model trained on mostly",
        "  aerated lungs (the lowest-coverage images are severe bilateral pneumonia).",
    ]
    return "\n".join(lines)
