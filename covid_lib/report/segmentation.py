"""Tables and figures of the lung segmentation (paper Sec. III-B, Fig. 2): scores, overlays, run record.

The masks and scores come from :mod:`covid_lib.segment` (:func:`~covid_lib.segment.predict_masks`,
:func:`~covid_lib.segment.score_masks`,
:func:`~covid_lib.segment.summarize`); this module turns them into per-group tables with 95%
intervals (the patient bootstrap of :func:`covid_lib.stats.bootstrap_ci`), draws their
distributions, overlays predicted and reference masks, averages where the two disagree, and
gathers the chapter's key numbers (:func:`key_numbers`). Figures are built without pyplot, as in :mod:`covid_lib.report.common`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from covid_lib.report.common import SOURCE_COLORS
from covid_lib.segment import N_BOOT, summarize
from covid_lib.stats import bootstrap_ci

#: Display names of the score columns of :func:`covid_lib.segment.score_images`.
METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "coverage": "coverage", "precision": "precision",
                "dice_model": "Dice (128 px)", "iou_model": "IoU (128 px)"}
REFERENCE_COLOR = "#00c853"  # reference mask: green
PREDICTED_COLOR = "#ff1744"  # our mask: red
_GROUP_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")



def panel_grid(n: int, ncols: int, size: float, *, row_height: float, extra_height: float
               ) -> tuple[Figure, np.ndarray]:
    """A figure of ``n`` square panels in rows of at most ``ncols``, every axis off (callers turn
    on the ones they draw); ``row_height`` and ``extra_height`` leave room for labels and titles."""
    n = max(n, 1)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(size * ncols, size * row_height * nrows + extra_height), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig, axes

def _group_color(name: str, k: int) -> str:
    return SOURCE_COLORS.get(name, _GROUP_PALETTE[k % len(_GROUP_PALETTE)])


# ----------------------------------------------------------------------------- run record
def run_record_table(record: dict) -> pd.DataFrame:
    """The U-Net training run (``weights/unet_lungs.json``) as a two-column table.

    Shows what trained the committed weights: command, configuration, model size, data version,
    split counts, best epoch, wall time, git commit and the weights' hash.
    """
    cfg = record.get("config", {})
    model = record.get("model", {})
    counts = record.get("split", {}).get("counts", {})
    split = "; ".join(f"{src}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: kv[0]))
                      for src, c in counts.items())
    history = record.get("history", [])
    best = next((h for h in history if h.get("epoch") == record.get("best_epoch")), {})
    wall = record.get("train_wall_seconds")
    rows = {
        "command": record.get("command", "?"),
        "model": f"{model.get('name', '?')}, base {model.get('base_channels', '?')} channels, "
                 f"depth {model.get('depth', '?')}, {model.get('parameters', 0):,} parameters, random init",
        "input": record.get("input", "?"),
        "optimisation": f"Adam lr {cfg.get('lr')}, cosine decay, batch {cfg.get('batch_size')}, "
                        f"{cfg.get('epochs')} epochs, augmentation {'on' if cfg.get('augment') else 'off'}, "
                        "BCE + soft Dice loss",
        "split (patients = images)": f"{split} (seed {cfg.get('seed')}, test {cfg.get('test_fraction')}, "
                                     f"val {cfg.get('val_fraction')})",
        "checkpoint": f"epoch {record.get('best_epoch')} of {len(history)} (best validation Dice "
                      f"{best.get('val_dice', float('nan')):.4f})",
        "training wall time": (f"{wall / 60:.1f} min on {record.get('threads', '?')} CPU thread(s), "
                               f"{record.get('machine', '?')}" if wall is not None else "?"),
        "data version": f"{record.get('data_version', '?')} ({record.get('data_version_note', '')})",
        "git commit": record.get("git_commit", "?"),
        "torch / python": f"{record.get('torch', '?')} / {record.get('python', '?')}",
        "weights": f"sha256 {record.get('weights_sha256_12', '?')}, {record.get('weights_bytes', 0) / 1e6:.1f} MB (float16)",
    }
    return pd.DataFrame({"value": rows}).rename_axis("")


def departures_table(record: dict, pipeline) -> pd.DataFrame:
    """What the paper states about its segmentation chain (Sec. III-B) beside what is done here.

    ``record`` is the U-Net's run record, ``pipeline`` the :class:`covid_lib.preprocess.Pipeline`
    the chapter runs; every number of the "here" column is read from them.
    """
    cfg, model = record.get("config", {}), record.get("model", {})
    counts = record.get("split", {}).get("counts", {})
    per_split = {s: sum(c.get(s, 0) for c in counts.values()) for s in ("train", "val", "test")}
    n_images = {src: sum(c.values()) for src, c in counts.items()}
    size, radius = pipeline.image_size, pipeline.blur_radius
    rows = [
        ("segmentation network", "a U-Net (Ronneberger et al.), no details",
         f"U-Net, {model.get('base_channels')} base channels, depth {model.get('depth')}, "
         f"{model.get('parameters', 0) / 1e6:.2f} M parameters"),
        ("initialisation", "not stated", "random: trained from scratch (no pretrained weights)"),
        ("training data", "Montgomery (138) + Shenzhen (662 images)",
         " + ".join(f"{k} {v}" for k, v in n_images.items()) + " (Shenzhen: the images with masks); "
         f"split by patient: {per_split['train']} train, {per_split['val']} validation, {per_split['test']} test"),
        ("U-Net input", "not stated",
         f"{cfg.get('image_size')} x {cfg.get('image_size')} px, globally equalised (a smooth organ; "
         "CPU budget)"),
        ("U-Net training", "not stated",
         f"BCE + soft Dice, Adam lr {cfg.get('lr')} with cosine decay, {cfg.get('epochs')} epochs, light "
         f"augmentation; checkpoint of best validation Dice (epoch {record.get('best_epoch')})"),
        ("mask post-processing", "not stated",
         "probability upsampled (bilinear) to the stored image, threshold 0.5, two largest components, "
         "holes filled"),
        ("histogram equalisation", "histogram equalisation (global or local not stated)",
         f"{pipeline.equalization}, 256 bins, on the stored 8-bit image (shorter side 256 px); "
         "CLAHE available as an option"),
        ("blur of the mask", "\"3 pixel radius\", resolution not stated",
         f"Gaussian, sigma {radius:g} px at the chain's {size} x {size} px output (zero-padded square), "
         f"i.e. {radius / size:.1%} of the side"),
        ("normalisation", "[0, 1]", "min-max to [0, 1] after masking"),
        ("segmentation quality", "not reported", "Dice/IoU on held-out patients and on V7 masks (this chapter)"),
        ("rejections", "none stated",
         f"empty mask, fragmented (two largest components < {pipeline.min_kept_fraction:.0%} of the "
         f"prediction), area < {pipeline.min_mask_area:.0%} or > {pipeline.max_mask_area:.0%}"),
        ("lung ROI crop", "not used (Ben Ahmed et al. 2021 crop to the lungs)",
         f"option: mask bounding box, rejected when a side is under {pipeline.min_crop_fraction:.0%} "
         "of the image's (rule 'sides')"),
    ]
    return pd.DataFrame(rows, columns=["", "paper (Sec. III-B)", "here"]).set_index("")


def plot_training_curve(record: dict) -> Figure:
    """Training loss and validation Dice per epoch of the run record, the kept epoch marked."""
    hist = pd.DataFrame(record.get("history", []))
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax_l, ax_d = fig.subplots(1, 2)
    if hist.empty:
        for ax in (ax_l, ax_d):
            ax.set_axis_off()
        return fig
    ax_l.plot(hist["epoch"], hist["train_loss"], color="#444", marker=".")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("training loss (BCE + 1 - Dice)")
    if "val_dice" in hist:
        ax_d.plot(hist["epoch"], hist["val_dice"], color=SOURCE_COLORS["shenzhen"], marker=".")
        ax_d.set_ylim(max(0.5, float(hist["val_dice"].min()) - 0.02), 1.0)
    best = record.get("best_epoch")
    for ax in (ax_l, ax_d):
        if best is not None:
            ax.axvline(best, color="#d62728", ls="--", lw=1, label=f"kept: epoch {best}")
        ax.grid(alpha=0.3)
    ax_d.set_xlabel("epoch")
    ax_d.set_ylabel("validation Dice (128 px)")
    ax_d.legend(fontsize=8, loc="lower right")
    fig.suptitle("U-Net training run (weights/unet_lungs.json)", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- score tables
def score_table(scores: pd.DataFrame, columns: Sequence[str] = ("dice", "iou"), *, by: str | None = "source",
                cluster: str = "patient_id", overall: str = "all") -> pd.DataFrame:
    """Mean, 95% patient-bootstrap interval, median and minimum of each score, per group and overall.

    Uses :func:`covid_lib.segment.summarize` (percentile bootstrap over ``cluster``,
    :data:`covid_lib.segment.N_BOOT` resamples).

    Returns:
        A long table: one row per (group, metric) with ``images``, ``patients``, ``mean``,
        ``ci_low``, ``ci_high``, ``median``, ``min``; the group ``overall`` holds every row.
    """
    groups: list[tuple[str, pd.DataFrame]] = []
    if by is not None:
        groups += [(str(name), part) for name, part in scores.groupby(by, sort=True)]
    if by is None or len(groups) != 1:
        groups.append((overall, scores))
    rows = []
    for name, part in groups:
        if part.empty:
            continue
        summary = summarize(part, tuple(columns), cluster=cluster)
        for col in columns:
            s = summary[col]
            rows.append({"group": name, "metric": col, "images": summary["n_images"],
                         "patients": summary["n_patients"], "mean": s["mean"], "ci_low": s["ci95"][0],
                         "ci_high": s["ci95"][1], "median": s["median"], "min": s["min"]})
    return pd.DataFrame(rows, columns=["group", "metric", "images", "patients", "mean", "ci_low", "ci_high",
                                       "median", "min"])


def format_score_table(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A :func:`score_table` as one row per group: ``mean [95% CI]`` and ``median (min)`` per metric."""
    out: dict[str, dict[str, object]] = {}
    for _, r in table.iterrows():
        row = out.setdefault(r["group"], {"images": int(r["images"]), "patients": int(r["patients"])})
        name = METRIC_NAMES.get(r["metric"], r["metric"])
        row[f"{name} mean [95% CI]"] = f"{r['mean']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]"
        row[f"{name} median (min)"] = f"{r['median']:.{digits}f} ({r['min']:.{digits}f})"
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("")


def format_ci(table: pd.DataFrame, group: str, metric: str, digits: int = 3) -> str:
    """One row of a :func:`score_table` as ``"0.965 [0.960, 0.969] (n=142)"``."""
    r = table[(table["group"] == group) & (table["metric"] == metric)].iloc[0]
    return f"{r['mean']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}] (n={r['images']})"


def key_numbers(held_table: pd.DataFrame, v7_table: pd.DataFrame, counts: pd.DataFrame,
                diag: pd.DataFrame) -> pd.DataFrame:
    """The segmentation chapter's key figures as a one-column table.

    Args:
        held_table: :func:`score_table` of the held-out Montgomery/Shenzhen scores (``dice``).
        v7_table: :func:`score_table` of the V7 scores (``dice``, ``coverage``, ``precision``;
            group ``"all"``).
        counts: :func:`covid_lib.report.chain.rejection_counts` of ``diag``.
        diag: :func:`covid_lib.report.chain.chain_diagnostics`.
    """
    key = {f"held-out Dice, {g}": format_ci(held_table, g, "dice") for g in held_table["group"].unique()}
    key.update({f"V7 {m}, all views": format_ci(v7_table, "all", m) for m in ("dice", "coverage", "precision")})
    total = counts.loc["all", "images"]
    key["refused by the paper chain"] = f"{total - counts.loc['all', 'kept by the paper chain']} of {total} frontal images"
    key["refused by the ROI crop as well"] = f"{counts.loc['all', 'crop under half']}"
    key["area kept, median"] = f"{diag['mask_area'].median():.0%} of the image"
    return pd.DataFrame({"value": key}).rename_axis("")


def compare_with_record(live: pd.DataFrame, recorded: pd.DataFrame,
                        columns: Sequence[str] = ("dice", "iou")) -> pd.DataFrame:
    """Per-image scores computed now against those recorded with the weights (matched on ``image_id``).

    Returns:
        One row per column: images matched, largest absolute difference, and means of both.
    """
    merged = live.merge(recorded, on="image_id", suffixes=("_live", "_recorded"))
    rows = []
    for col in columns:
        a, b = merged[f"{col}_live"].astype(float), merged[f"{col}_recorded"].astype(float)
        rows.append({"score": METRIC_NAMES.get(col, col), "images matched": len(merged),
                     "images computed": len(live), "max |live - recorded|": float((a - b).abs().max()) if len(merged) else float("nan"),
                     "mean live": float(a.mean()), "mean recorded": float(b.mean())})
    return pd.DataFrame(rows).set_index("score")


def worst_cases(scores: pd.DataFrame, n: int, column: str = "dice", *, by: str | None = None) -> pd.DataFrame:
    """The ``n`` lowest-scoring rows (per group of ``by`` when given), lowest first; ties by ``image_id``."""
    ordered = scores.sort_values([column, "image_id"], kind="stable")
    if by is None:
        return ordered.head(n)
    return ordered.groupby(by, sort=True, group_keys=False).head(n).sort_values([by, column], kind="stable")


# ----------------------------------------------------------------------------- distributions
def plot_score_distributions(scores: pd.DataFrame, columns: Sequence[str] = ("dice", "iou"), *,
                             by: str = "source", title: str | None = None, seed: int = 0) -> Figure:
    """One panel per score: every image as a jittered point per group, a box, and the mean with its
    95% patient-bootstrap interval (black bar), so that the spread and the worst cases show."""
    groups = sorted(scores[by].astype(str).unique())
    fig = Figure(figsize=(4.2 * len(columns), 0.75 * len(groups) + 1.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(columns), sharey=True))
    rng = np.random.default_rng(seed)
    for ax, col in zip(axes, columns):
        for k, g in enumerate(groups):
            part = scores[scores[by].astype(str) == g]
            vals = part[col].to_numpy(float)
            color = _group_color(g, k)
            ax.boxplot([vals], positions=[k], orientation="horizontal", widths=0.5, showfliers=False,
                       patch_artist=True, boxprops={"facecolor": color, "alpha": 0.25},
                       medianprops={"color": color})
            ax.scatter(vals, k + rng.uniform(-0.22, 0.22, len(vals)), s=9, color=color, alpha=0.6, lw=0)
            lo, hi = bootstrap_ci(vals, groups=part["patient_id"].to_numpy() if "patient_id" in part else None,
                                  n_boot=N_BOOT)
            mean = vals.mean()  # (a constant score's interval can miss it by rounding)
            ax.errorbar([mean], [k - 0.38], xerr=[[max(mean - lo, 0.0)], [max(hi - mean, 0.0)]], fmt="D",
                        color="black", ms=4, capsize=3, lw=1.2)
        ax.set_yticks(range(len(groups)), [f"{g}\n(n={int((scores[by].astype(str) == g).sum())})" for g in groups])
        ax.set_xlabel(METRIC_NAMES.get(col, col))
        ax.grid(axis="x", alpha=0.3)
        lo_x = float(np.nanmin(scores[col])) if len(scores) else 0.0
        ax.set_xlim(max(0.0, lo_x - 0.03), 1.005)
    axes[0].invert_yaxis()
    if title:
        fig.suptitle(title + "  (diamond: mean with 95% patient-bootstrap interval)", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- masks
def overlay_masks(ax, image: np.ndarray, ref: np.ndarray | None, pred: np.ndarray | None, *,
                  fill: bool = True) -> None:
    """Draw ``image`` with the reference contour (green), our contour (red, dashed) and, when
    ``fill``, the reference lung we miss (cyan) and our lung outside the reference (magenta)."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    if fill and ref is not None and pred is not None:
        tint = np.zeros((*image.shape, 4), np.float32)
        tint[ref & ~pred] = (0.0, 0.9, 1.0, 0.45)
        tint[pred & ~ref] = (1.0, 0.0, 0.8, 0.45)
        ax.imshow(tint)
    if ref is not None and ref.any():
        ax.contour(ref, levels=[0.5], colors=[REFERENCE_COLOR], linewidths=1.1)
    if pred is not None and pred.any():
        ax.contour(pred, levels=[0.5], colors=[PREDICTED_COLOR], linewidths=1.1, linestyles="--")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_mask_cases(cases: Sequence[dict], *, ncols: int = 4, size: float = 2.8, title: str | None = None,
                    reference: str = "reference") -> Figure:
    """Images with their reference and predicted masks overlaid (see :func:`overlay_masks`).

    Args:
        cases: dicts with ``image``, ``ref``, ``pred`` and a ``label`` written under the image.
        reference: what the reference mask is called in the legend (e.g. "V7 mask").
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, axes = panel_grid(len(cases), ncols, size, row_height=1.12, extra_height=0.7)
    for ax, case in zip(axes.ravel(), cases):
        ax.set_axis_on()
        overlay_masks(ax, case["image"], case.get("ref"), case.get("pred"))
        ax.set_xlabel(case.get("label", ""), fontsize=8)
    handles = [Line2D([], [], color=REFERENCE_COLOR, lw=1.5, label=reference),
               Line2D([], [], color=PREDICTED_COLOR, lw=1.5, ls="--", label="our U-Net mask"),
               Patch(color=(0.0, 0.9, 1.0, 0.6), label=f"{reference} only (missed)"),
               Patch(color=(1.0, 0.0, 0.8, 0.6), label="ours only (extra)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def disagreement_maps(refs: Iterable[np.ndarray], preds: Iterable[np.ndarray], size: int = 128) -> dict[str, np.ndarray]:
    """Where reference and predicted masks agree, averaged over images in a common frame.

    Each pair is resized (nearest neighbour) to ``size`` x ``size`` (normalised image coordinates,
    the aspect ratio is not kept); the maps are per-pixel shares of images.

    Returns:
        ``reference`` and ``predicted`` (how often each pixel is lung), ``missed`` (reference
        only) and ``extra`` (predicted only), each ``float32`` (size, size); ``n`` in ``"n"``.
    """
    from PIL import Image

    def small(mask: np.ndarray) -> np.ndarray:
        img = Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255)
        return np.asarray(img.resize((size, size), Image.NEAREST)) > 127

    acc = {k: np.zeros((size, size), np.float64) for k in ("reference", "predicted", "missed", "extra")}
    n = 0
    for ref, pred in zip(refs, preds):
        r, p = small(ref), small(pred)
        acc["reference"] += r
        acc["predicted"] += p
        acc["missed"] += r & ~p
        acc["extra"] += p & ~r
        n += 1
    out: dict = {k: (v / max(n, 1)).astype(np.float32) for k, v in acc.items()}
    out["n"] = n
    return out


def plot_disagreement(maps: dict, *, reference: str = "reference", title: str | None = None) -> Figure:
    """The four maps of :func:`disagreement_maps` side by side (share of images, 0-1)."""
    panels = (("reference", f"{reference}: lung"), ("predicted", "our mask: lung"),
              ("missed", f"{reference} only (missed by us)"), ("extra", "ours only (extra)"))
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, (key, label) in zip(axes, panels):
        im = ax.imshow(maps[key], cmap="magma", vmin=0, vmax=1 if key in ("reference", "predicted") else 0.5)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8, label="share of images")
    axes[0].set_xlabel("image left = patient's right", fontsize=8)
    fig.suptitle(title or f"{maps.get('n', '?')} images in normalised coordinates", fontsize=10)
    return fig


__all__ = [
    "METRIC_NAMES", "run_record_table", "departures_table", "plot_training_curve", "score_table", "format_score_table",
    "format_ci", "key_numbers",
    "compare_with_record", "worst_cases", "plot_score_distributions", "overlay_masks",
    "plot_mask_cases", "disagreement_maps", "plot_disagreement",
]
