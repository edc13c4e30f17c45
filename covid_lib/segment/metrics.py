"""Per-image overlap scores of a lung mask against a reference, and their summary (Sec. III-B).

Dice and IoU per image; means carry a 95% percentile bootstrap interval over patients
(:func:`covid_lib.stats.bootstrap_ci`): one image per patient in Montgomery/Shenzhen, several
for Cohen, whose images are resampled together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from covid_lib.stats import bootstrap_ci

#: Resamples of the patient bootstrap of every segmentation score.
N_BOOT = 10_000


def dice_iou(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two boolean masks; both 1.0 when both masks are empty."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if pred.shape != target.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {target.shape}")
    inter = float(np.logical_and(pred, target).sum())
    total = float(pred.sum() + target.sum())
    if total == 0:
        return 1.0, 1.0
    return 2 * inter / total, inter / (total - inter)




def summarize(scores: pd.DataFrame, columns=("dice", "iou"), cluster: str = "patient_id") -> dict:
    """Mean, median, minimum and 95% patient-bootstrap interval of each score column."""
    out: dict = {"n_images": int(len(scores)), "n_patients": int(scores[cluster].nunique()),
                 "ci": f"95% percentile bootstrap over patients, {N_BOOT:,} resamples"}
    for col in columns:
        lo, hi = bootstrap_ci(scores[col].to_numpy(np.float64), groups=scores[cluster].to_numpy(), n_boot=N_BOOT)
        out[col] = {"mean": round(float(scores[col].mean()), 4), "ci95": [round(lo, 4), round(hi, 4)],
                    "median": round(float(scores[col].median()), 4), "min": round(float(scores[col].min()), 4)}
    return out
