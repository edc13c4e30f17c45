"""Lung segmentation: train, evaluate and load the U-Net of the paper's pre-processing (Sec. III-B).

The paper trains a U-Net on the Montgomery and Shenzhen sets (manual lung masks) and gives no
further detail. Here:

- **Data**: every Montgomery and Shenzhen image with its manual mask; a patient-level split from
  :func:`covid_lib.data.assign_splits` (seeded per source, stratified by TB label within each
  source): ``test_fraction`` of each source's patients held out, ``val_fraction`` of the rest for
  checkpoint selection.
- **Input**: :func:`covid_lib.preprocess.segmenter_input` - global histogram equalisation, bilinear
  resize to ``image_size`` x ``image_size`` (128 by default: lungs are smooth), [0, 1].
- **Training**: BCE + soft Dice loss, Adam, cosine learning-rate decay, light augmentation (small
  random affine transforms, gamma and contrast jitter; no flips: the heart is on one side); the
  checkpoint with the best validation Dice is kept, saved as a float16 state dict.
- **Evaluation**: Dice and IoU per image, (a) at the model resolution against the resized manual
  mask and (b) - the headline - at the stored mask resolution, after the chain's own
  post-processing (:func:`covid_lib.preprocess.probability_to_mask`). 95% intervals are
  percentile bootstraps over patients (one image per patient in Montgomery/Shenzhen, so over
  images; clusters of a patient's images for Cohen). Out of domain, the V7 masks of Cohen's
  COVID-19 images are scored the same way, plus *coverage* (the share of the V7 mask our mask
  covers) and *precision* (the share of our mask inside V7). Coverage below 1 has two causes,
  told apart by precision staying near 1 and by looking at the overlays: (1) *definition* - V7
  masks include the lung behind the heart, which the Montgomery/Shenzhen masks, and so our model,
  leave out (a strip along the left heart border on most images); (2) *error* - densely
  consolidated lung looks like soft tissue to a model trained on mostly aerated TB-screening
  lungs and is left out (the lowest-coverage images are severe bilateral COVID-19 pneumonia).
  The second matters for the paper's chain: masking removes part of the opacities it should
  keep.

Command line::

    python -m covid_lib segment train [--epochs 30 --image-size 128 --threads 2 --device cpu]
    python -m covid_lib segment eval [--weights weights/unet_lungs.pt] [--data-root PATH]
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from covid_lib.paths import REPO_ROOT
from covid_lib.preprocess import DEFAULT_WEIGHTS, file_hash, probability_to_mask, resize, segmenter_input

SEG_SOURCES = ("montgomery", "shenzhen")
CHECKPOINT_FORMAT = "covid_lib.unet/1"


# ------------------------------------------------------------------------------------ metrics
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


def bootstrap_ci(values, clusters=None, *, n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling ``clusters`` (default: each value)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    clusters = np.arange(len(values)) if clusters is None else pd.factorize(np.asarray(clusters))[0]
    n_c = clusters.max() + 1
    sums = np.bincount(clusters, weights=values, minlength=n_c)
    counts = np.bincount(clusters, minlength=n_c).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_c, size=(n_boot, n_c))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def summarize(scores: pd.DataFrame, columns=("dice", "iou"), cluster: str = "patient_id") -> dict:
    """Mean, median, minimum and 95% patient-bootstrap interval of each score column."""
    out: dict = {"n_images": int(len(scores)), "n_patients": int(scores[cluster].nunique()),
                 "ci": "95% percentile bootstrap over patients, 10,000 resamples"}
    for col in columns:
        lo, hi = bootstrap_ci(scores[col], scores[cluster])
        out[col] = {"mean": round(float(scores[col].mean()), 4), "ci95": [round(lo, 4), round(hi, 4)],
                    "median": round(float(scores[col].median()), 4), "min": round(float(scores[col].min()), 4)}
    return out


# ------------------------------------------------------------------------------- checkpoints
def save_unet(model, path: str | os.PathLike, *, input_size: int, meta: dict | None = None) -> Path:
    """Save a U-Net as a float16 state dict with its config and input size."""
    import torch

    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "model": "unet", "config": model.config(),
               "input_size": int(input_size), "threshold": 0.5,
               "input": "covid_lib.preprocess.segmenter_input: global histogram equalisation, "
                        "bilinear resize to input_size x input_size, [0, 1]",
               "meta": meta or {}, "state_dict": state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_unet(path: str | os.PathLike | None = None, *, device: str = "cpu"):
    """Load a U-Net saved by :func:`save_unet` (default: the committed ``weights/unet_lungs.pt``).

    Returns:
        The model in eval mode, float32, on ``device``, with ``input_size`` and ``meta`` attributes.

    Raises:
        FileNotFoundError: no file at ``path`` (the message says how to make one).
        ValueError: the file is not a covid_lib U-Net checkpoint.
    """
    import torch

    from covid_lib.models import create_model

    path = Path(path) if path else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no U-Net weights at {path}; train them with `python -m covid_lib segment train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise ValueError(f"cannot read U-Net checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a covid_lib U-Net checkpoint (format {CHECKPOINT_FORMAT})")
    model = create_model(payload["model"], **payload["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    model.input_size = int(payload["input_size"])
    model.meta = payload.get("meta", {})
    return model.to(device).eval()


# -------------------------------------------------------------------------------------- data
def segmentation_manifest(data_root=None, *, seed: int = 0, test_fraction: float = 0.2,
                          val_fraction: float = 0.15) -> pd.DataFrame:
    """Montgomery + Shenzhen rows with masks and a patient-level ``split`` (train/val/test)."""
    from covid_lib.data import assign_splits, load_source

    frames = [load_source(name, data_root).manifest for name in SEG_SOURCES]
    manifest = pd.concat(frames, ignore_index=True)
    manifest = manifest[manifest["mask_path"].notna()].reset_index(drop=True)
    return assign_splits(manifest, seed=seed, test_fraction=test_fraction, val_fraction=val_fraction)


def manifests_version(data_root=None, sources=SEG_SOURCES) -> str:
    """sha256 prefix over the manifests of ``sources`` (the training data's version)."""
    import hashlib

    from covid_lib.paths import resolve_data_root

    root = resolve_data_root(data_root)
    digest = hashlib.sha256()
    for name in sources:
        digest.update(name.encode())
        digest.update((root / name / "manifest.csv").read_bytes())
    return digest.hexdigest()[:12]


def load_arrays(manifest: pd.DataFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs (N, size, size) float32 and soft targets (N, size, size) float32 in [0, 1]."""
    from covid_lib.data import read_image

    xs = np.empty((len(manifest), size, size), np.float32)
    ys = np.empty_like(xs)
    for i, (img_path, mask_path) in enumerate(zip(manifest["image_path"], manifest["mask_path"])):
        img = read_image(img_path)
        mask = (read_image(mask_path) > 127).astype(np.float32)
        xs[i] = segmenter_input(img, size)
        ys[i] = resize(mask, (size, size))
    return xs, ys


# ---------------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    """Settings of one U-Net training run (all recorded in the run record)."""

    image_size: int = 128
    base_channels: int = 16
    depth: int = 4
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    augment: bool = True
    device: str = "cpu"
    threads: int = 2


def augment_batch(x, y, generator):
    """Random affine (rotation +-10 deg, scale 0.9-1.1, shift +-6%), gamma 0.7-1.4, contrast
    0.9-1.1, applied to a batch of inputs ``x`` and soft masks ``y`` (N, 1, H, W)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = uniform(-10, 10) * math.pi / 180
    scale = uniform(0.9, 1.1)
    tx, ty = uniform(-0.06, 0.06), uniform(-0.06, 0.06)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gamma = uniform(0.7, 1.4).view(n, 1, 1, 1)
    contrast = uniform(0.9, 1.1).view(n, 1, 1, 1)
    x = ((x.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5).clamp(0, 1)
    return x, y


def bce_dice_loss(logits, target, eps: float = 1.0):
    """Binary cross-entropy plus (1 - soft Dice), averaged over the batch."""
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum((1, 2, 3))
    dice = (2 * inter + eps) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + eps)
    return bce + (1 - dice).mean()


def predict_probs(model, xs: np.ndarray, *, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """Probabilities (N, H, W) for model inputs ``xs`` (N, H, W) already at the model size."""
    import torch

    model.eval()
    out = np.empty(xs.shape, np.float32)
    with torch.inference_mode():
        for s in range(0, len(xs), batch_size):
            x = torch.from_numpy(xs[s:s + batch_size])[:, None].to(device)
            out[s:s + batch_size] = torch.sigmoid(model(x))[:, 0].float().cpu().numpy()
    return out


def fit_unet(xs, ys, val_xs, val_ys, cfg: TrainConfig, *, log=None):
    """Train a U-Net on arrays; return (best model, history). ``log(dict)`` is called per epoch.

    The returned model holds the weights of the epoch with the best mean validation Dice
    (model resolution, threshold 0.5).
    """
    import copy

    import torch

    from covid_lib.models import create_model

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = cfg.device
    model = create_model("unet", base_channels=cfg.base_channels, depth=cfg.depth).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = max(1, math.ceil(len(xs) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch, eta_min=cfg.lr / 100)
    x_all, y_all = torch.from_numpy(xs)[:, None], torch.from_numpy(ys)[:, None]
    best, best_state, history = -1.0, None, []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(xs), generator=gen)
        total = 0.0
        for s in range(0, len(xs), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            x, y = x_all[idx], y_all[idx]
            if cfg.augment:
                x, y = augment_batch(x, y, gen)
            loss = bce_dice_loss(model(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "train_loss": round(total / len(xs), 5), "lr": round(sched.get_last_lr()[0], 7)}
        if len(val_xs):
            probs = predict_probs(model, val_xs, device=device)
            dices = [dice_iou(p > 0.5, t > 0.5)[0] for p, t in zip(probs, val_ys)]
            row["val_dice"] = round(float(np.mean(dices)), 5)
            score = row["val_dice"]
        else:
            score = -row["train_loss"]
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
            row["best"] = True
        row["seconds"] = round(time.perf_counter() - t0, 1)
        history.append(row)
        if log:
            log(row)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


# -------------------------------------------------------------------------------- evaluation
def predict_masks(model, manifest: pd.DataFrame, *, batch_size: int = 32, device: str = "cpu",
                  read=None) -> list[dict]:
    """Our lung mask beside the reference mask of each row (``image_path``, ``mask_path``).

    The prediction is the chain's (:func:`covid_lib.preprocess.lung_probabilities`, then
    :func:`~covid_lib.preprocess.probability_to_mask` at the stored image's resolution); one U-Net
    pass serves both the scores (:func:`score_masks`) and the figures drawn from the masks.

    Args:
        read: the image reader (default :func:`covid_lib.data.read_image`; tests pass a fake).

    Returns:
        One dict per row, in order: ``image_id``, ``patient_id``, ``source``, ``view`` (when the
        manifest has them), ``image`` (uint8), ``prob`` (model-size probabilities), ``ref`` and
        ``pred`` (bool, image size).
    """
    from covid_lib.preprocess import lung_probabilities

    if read is None:
        from covid_lib.data import read_image as read
    out = []
    records = manifest.to_dict("records")
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        images = [read(r["image_path"]) for r in chunk]
        probs = lung_probabilities(images, model, batch_size=batch_size, device=device)
        for rec, img, prob in zip(chunk, images, probs):
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


def cohen_manifest(data_root=None, *, frontal_only: bool = True) -> pd.DataFrame:
    """Cohen COVID-19 (covid == 1) images with V7 lung masks (frontal views by default)."""
    from covid_lib.data import load_source

    m = load_source("cohen", data_root).manifest
    m = m[m["mask_path"].notna() & (m["covid"] == 1)]
    if frontal_only:
        m = m[m["frontal"]]
    return m.reset_index(drop=True)


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


# ---------------------------------------------------------------------------------- train run
def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def train(cfg: TrainConfig, *, data_root=None, out: str | os.PathLike = DEFAULT_WEIGHTS,
          log_path: str | os.PathLike | None = None, command: str | None = None) -> dict:
    """Train on Montgomery + Shenzhen, evaluate, save ``out`` (.pt) and its run record (.json)."""
    import torch

    t_start = time.time()
    commit = _git_commit()  # the code the run starts from
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log_fh = open(log_path, "a") if log_path else None

    def log(row):
        line = json.dumps(row)
        print(line, flush=True)
        if log_fh:
            log_fh.write(line + "\n")
            log_fh.flush()

    manifest = segmentation_manifest(data_root, seed=cfg.seed, test_fraction=cfg.test_fraction,
                                     val_fraction=cfg.val_fraction)
    counts = manifest.groupby(["source", "split"]).size().unstack(fill_value=0)
    log({"event": "split", "counts": counts.to_dict("index")})
    parts = {s: manifest[manifest["split"] == s] for s in ("train", "val", "test")}
    xs, ys = load_arrays(parts["train"], cfg.image_size)
    vx, vy = load_arrays(parts["val"], cfg.image_size)
    log({"event": "loaded", "train": len(xs), "val": len(vx), "seconds": round(time.time() - t_start, 1)})
    model, history = fit_unet(xs, ys, vx, vy, cfg, log=log)
    train_seconds = time.time() - t_start
    model.input_size = cfg.image_size
    split = {"seed": cfg.seed, "test_fraction": cfg.test_fraction, "val_fraction": cfg.val_fraction}
    result, held, cohen = evaluate(model, data_root, split=split, device=cfg.device)
    best = max(history, key=lambda r: r.get("val_dice", -r["train_loss"]))
    record = {
        "command": command or " ".join([Path(sys.executable).name, *sys.argv]),
        "config": asdict(cfg),
        "model": {"name": "unet", **model.config(),
                  "parameters": int(sum(p.numel() for p in model.parameters()))},
        "input": "global histogram equalisation, bilinear resize to "
                 f"{cfg.image_size}x{cfg.image_size}, [0,1]",
        "data_version": manifests_version(data_root),
        "data_version_note": "sha256[:12] of montgomery + shenzhen manifest.csv",
        "split": {**split, "method": "covid_lib.data.assign_splits (patient groups, per-source seed, "
                                      "stratified by tb)", "counts": counts.to_dict("index")},
        "git_commit": commit,
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
        "threads": cfg.threads,
        "train_wall_seconds": round(train_seconds, 1),
        "total_wall_seconds": round(time.time() - t_start, 1),
        "best_epoch": best["epoch"], "history": history,
        "evaluation": {k: v for k, v in result.items() if k != "held_out_ids"},
        "headline": "held_out.dice: Dice at the stored 256-px mask resolution after post-processing",
        "held_out_ids": result["held_out_ids"],
    }
    save_unet(model, out, input_size=cfg.image_size,
              meta={"data_version": record["data_version"], "split": split, "best_epoch": best["epoch"]})
    record["weights_sha256_12"] = file_hash(out)
    record["weights_bytes"] = out.stat().st_size
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    scores_path = out.with_suffix(".scores.csv")
    pd.concat([held.assign(set="held_out"), cohen.assign(set="cohen_v7")]).round(5).to_csv(scores_path, index=False)
    log({"event": "done", "seconds": record["total_wall_seconds"]})
    print(format_report(result), flush=True)
    if log_fh:
        log_fh.write(format_report(result) + "\n")
        log_fh.close()
    return record


# ------------------------------------------------------------------------------------- CLI
def _cmd_train(args) -> int:
    cfg = TrainConfig(image_size=args.image_size, base_channels=args.base_channels, depth=args.depth,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      test_fraction=args.test_fraction, val_fraction=args.val_fraction,
                      device=args.device, threads=args.threads)
    from covid_lib.profiles import resolve_device

    cfg.device = resolve_device(cfg.device)
    command = getattr(args, "command_line", None)
    if command is None and sys.argv[1:3] == ["segment", "train"]:
        command = "python -m covid_lib segment train " + " ".join(sys.argv[3:])
    train(cfg, data_root=args.data_root, out=args.out, log_path=args.log, command=command)
    return 0


def _cmd_eval(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    model = load_unet(args.weights)
    split = model.meta.get("split") if getattr(model, "meta", None) else None
    result, held, cohen = evaluate(model, args.data_root, split=split)
    print(format_report(result))
    if args.scores:
        pd.concat([held.assign(set="held_out"), cohen.assign(set="cohen_v7")]).to_csv(args.scores, index=False)
    return 0


def register_cli(subparsers) -> None:
    """Add the ``segment`` group (``train``, ``eval``) to the ``python -m covid_lib`` parser."""
    group = subparsers.add_parser("segment", help="lung segmentation U-Net: train and evaluate")
    sub = group.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the U-Net on Montgomery + Shenzhen and save weights + run record")
    defaults = TrainConfig()
    for name in ("image_size", "base_channels", "depth", "epochs", "batch_size", "seed", "threads"):
        tr.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("lr", "test_fraction", "val_fraction"):
        tr.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    tr.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    tr.add_argument("--data-root", default=None)
    tr.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="weights path; the run record goes beside it (.json)")
    tr.add_argument("--log", default=None, help="append per-epoch JSON lines here")
    tr.set_defaults(func=_cmd_train)
    ev = sub.add_parser("eval", help="Dice/IoU on held-out Montgomery+Shenzhen and on Cohen V7 masks")
    ev.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ev.add_argument("--data-root", default=None)
    ev.add_argument("--threads", type=int, default=2)
    ev.add_argument("--scores", default=None, help="write per-image scores to this CSV")
    ev.set_defaults(func=_cmd_eval)
