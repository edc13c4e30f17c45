"""U-Net training on Montgomery + Shenzhen (Sec. III-B; the paper gives no detail).

BCE + soft Dice loss, Adam, cosine learning-rate decay, light augmentation (small random affine
transforms, gamma and contrast jitter; no flips: the heart is on one side); the checkpoint with
the best validation Dice is kept and saved as a float16 state dict
(:func:`covid_lib.models.weights.save_unet`) with its run record.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from covid_lib.models import create_model
from covid_lib.models.weights import DEFAULT_WEIGHTS, file_hash, save_unet
from covid_lib.provenance import git_state
from covid_lib.segment.data import load_arrays, manifests_version, segmentation_manifest
from covid_lib.segment.evaluation import evaluate, format_report
from covid_lib.segment.metrics import dice_iou
from covid_lib.train.datasets import Augment, affine_matrices


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


#: The U-Net's geometric augmentation (:class:`covid_lib.train.Augment` settings): rotation
#: +-10 deg, scale 0.9-1.1, shift +-3 % of the side, no flip.
SEGMENT_AFFINE = dict(flip_p=0.0, degrees=10.0, translate=0.03, scale=(0.9, 1.1))


def augment_batch(x, y, generator):
    """Random affine (:data:`SEGMENT_AFFINE`, the classifier's sampler with other ranges), gamma
    0.7-1.4, contrast 0.9-1.1, applied to a batch of inputs ``x`` and soft masks ``y`` (N, 1, H, W)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    theta = affine_matrices(n, Augment(**SEGMENT_AFFINE), generator).to(x.device)
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



def train(cfg: TrainConfig, *, data_root=None, out: str | os.PathLike = DEFAULT_WEIGHTS,
          log_path: str | os.PathLike | None = None, command: str | None = None) -> dict:
    """Train on Montgomery + Shenzhen, evaluate, save ``out`` (.pt) and its run record (.json)."""
    import torch

    t_start = time.time()
    commit = git_state()["commit"] or "unknown"  # the code the run starts from
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
