"""Training: focal loss, SGD, plateau schedule, early stopping, best checkpoint on validation AUC.

Follows Tartaglione et al. 2020, Sec. III-C, and their code where the text is silent:

- **Two stages.** The feature extractor is pre-trained on a pneumonia task (ChestXRay = our
  ``kermany``, three classes; RSNA = our ``nih``, pneumonia yes/no), then the head is replaced
  (:func:`replace_head`) and the *whole* network is fine-tuned on the COVID composition: the paper
  argues against freezing the encoder (Sec. III-C, IV-A). Both stages use :func:`fit` with the same
  settings; the paper does not say whether fine-tuning used other learning rates or layer-wise
  rates, so it does not here.
- **Loss.** Focal loss (Lin et al. 2017), ``-(1 - p_t)**gamma * log p_t`` on the softmax output,
  averaged over the batch, without the class weight ``alpha`` (the training sets are balanced,
  Sec. IV); gamma from the profile (2 in the paper's code). The paper's text does not name it.
- **Optimiser.** SGD with momentum and weight decay (code: lr 0.1, weight decay 1e-3; the momentum
  is not published: 0.9 here), ReduceLROnPlateau on the validation loss (code: patience 15; the
  monitored quantity is not published; the loss is, unlike AUC, defined for every batch size and
  never saturates at 1.0 on tiny validation sets).
- **Model selection.** The epoch with the highest validation AUC (the paper's code selects on
  validation AUC; macro one-vs-rest AUC for the three-class pre-training), ties broken by the
  lower validation loss; validation loss when the validation set holds a single class. Early
  stopping (not in the paper: the ``cpu`` profile's budget) counts epochs without a new best.

Runs are seeded and deterministic on CPU (same seed, same threads: same weights).

Example:
    >>> import torch
    >>> logits, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    >>> p = torch.softmax(logits, 1)[0, 0]
    >>> bool(torch.isclose(focal_loss(logits, y, gamma=2.0), -(1 - p) ** 2 * torch.log(p)))
    True
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Dataset

from covid_lib.profiles import Profile, get_profile, resolve_device


# ------------------------------------------------------------------------------------------ loss
def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               reduction: str = "mean") -> torch.Tensor:
    """Multi-class focal loss ``-(1 - p_t)**gamma * log p_t`` (Lin et al. 2017), no ``alpha``.

    Args:
        logits: (N, C) raw outputs.
        target: (N,) class indices.
        gamma: focusing parameter; 0 gives the cross-entropy.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    logp_t = F.log_softmax(logits.float(), dim=1).gather(1, target.long()[:, None])[:, 0]
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t if gamma else -logp_t
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def make_loss(name: str, gamma: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The profile's loss: ``"focal"`` (with ``gamma``) or ``"ce"``."""
    if name == "focal":
        return lambda logits, y: focal_loss(logits, y, gamma)
    if name == "ce":
        return lambda logits, y: F.cross_entropy(logits.float(), y)
    raise ValueError(f"unknown loss {name!r}; choose 'focal' or 'ce'")


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training stage (see :meth:`from_profile`).

    Attributes:
        epochs: maximum epochs.
        batch_size: images per step.
        lr, momentum, weight_decay: SGD settings.
        lr_patience: ReduceLROnPlateau patience (factor 0.1, on the validation loss).
        early_stopping: stop after this many epochs without a new best (None: never).
        loss: ``"focal"`` or ``"ce"``; focal_gamma: its gamma.
        seed: seeds weights' init order, shuffling and augmentation.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        num_workers: data-loader workers.
        progress: show a tqdm bar per epoch.
    """

    epochs: int = 1
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-3
    lr_patience: int = 15
    early_stopping: int | None = None
    loss: str = "focal"
    focal_gamma: float = 2.0
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True

    @classmethod
    def from_profile(cls, profile: str | Profile, **overrides) -> "TrainConfig":
        """The training settings of a compute profile, with ``overrides`` applied."""
        p = get_profile(profile)
        base = cls(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, momentum=p.momentum,
                   weight_decay=p.weight_decay, lr_patience=p.lr_patience, early_stopping=p.early_stopping,
                   loss=p.loss, focal_gamma=p.focal_gamma, num_workers=p.num_workers)
        return replace(base, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """What :func:`fit` returns: the model with its best weights loaded, and the record."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    monitor: str
    best_value: float
    seconds: float
    images_per_s: float
    stopped_early: bool


# --------------------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA); make cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the classifier for a new one with ``num_classes`` outputs (between the stages).

    Raises:
        TypeError: the model has no timm-style ``reset_classifier``.
    """
    if not hasattr(model, "reset_classifier"):
        raise TypeError(f"{type(model).__name__} has no reset_classifier(); cannot replace its head")
    model.reset_classifier(num_classes)
    return model


def _num_classes(model: nn.Module) -> int:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return int(head.out_features) if isinstance(head, nn.Linear) else -1


def _auc(y: np.ndarray, probs: np.ndarray) -> float:
    classes = np.unique(y)
    if len(classes) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    if len(classes) < probs.shape[1]:
        return float("nan")
    return float(roc_auc_score(y, probs, multi_class="ovr", average="macro"))


def predict(model: nn.Module, data: Dataset, *, batch_size: int = 64, device: str = "auto",
            loss_fn: Callable | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax probabilities (N, C), labels (N,) and the mean loss (NaN without ``loss_fn``)."""
    device = resolve_device(device)
    model.to(device).eval()
    probs, labels, total = [], [], 0.0
    with torch.inference_mode():
        for x, y, _ in DataLoader(data, batch_size=batch_size, shuffle=False):
            logits = model(x.to(device)).float()
            if loss_fn is not None:
                total += float(loss_fn(logits, y.to(device))) * len(y)
            probs.append(torch.softmax(logits, 1).cpu().numpy())
            labels.append(y.numpy())
    n = sum(len(y) for y in labels)
    k = _num_classes(model)
    probs_arr = np.concatenate(probs) if probs else np.zeros((0, max(k, 1)), np.float32)
    labels_arr = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return probs_arr, labels_arr, (total / n if n and loss_fn is not None else float("nan"))


def _train_epoch(model, loader, optimizer, loss_fn, device, bar) -> tuple[float, int]:
    model.train()
    total, n = 0.0, 0
    for x, y, _ in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()}; lower the learning rate")
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        n += len(y)
        if bar is not None:
            bar.update(len(y))
            bar.set_postfix(loss=f"{total / n:.4f}")
    return total / max(n, 1), n


def _is_better(value: float, loss: float, best: tuple[float, float] | None, monitor: str) -> bool:
    if best is None:
        return True
    if monitor == "val_loss":
        return loss < best[1]
    return value > best[0] or (value == best[0] and loss < best[1])


def _loader(data: Dataset, cfg: TrainConfig, device: str) -> DataLoader:
    n = len(data)
    return DataLoader(data, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                      generator=torch.Generator().manual_seed(cfg.seed), pin_memory=device == "cuda",
                      drop_last=n > cfg.batch_size and n % cfg.batch_size == 1)  # no 1-image BN batch


def _check_data(train: Dataset, val: Dataset) -> None:
    if len(train) == 0:
        raise ValueError("empty training set")
    if len(val) == 0:
        raise ValueError("empty validation set: model selection needs one (paper: 20% of training data)")


# -------------------------------------------------------------------------------------------- fit
def fit(model: nn.Module, train: Dataset, val: Dataset, config: TrainConfig | None = None) -> FitResult:
    """Train ``model`` on ``train``; keep the weights of the best validation epoch.

    Args:
        model: a classifier whose outputs match the labels' classes.
        train, val: datasets of ``(image, label, group)``.
        config: :class:`TrainConfig` (default: its defaults).

    Returns:
        :class:`FitResult`; ``history`` has one row per epoch: ``epoch, lr, train_loss,
        val_loss, val_auc, val_acc, seconds, best``.
    """
    cfg = config or TrainConfig()
    _check_data(train, val)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device)
    loss_fn = make_loss(cfg.loss, cfg.focal_gamma)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=cfg.lr_patience)
    val_labels = getattr(val, "labels", None)
    if val_labels is None:
        val_labels = np.asarray([int(val[i][1]) for i in range(len(val))])
    monitor = "val_auc" if len(np.unique(val_labels)) > 1 else "val_loss"
    loader = _loader(train, cfg, device)
    rows, best, best_state, since_best, n_seen = [], None, None, 0, 0
    t_start = time.perf_counter()
    train_seconds = 0.0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        bar = _bar(len(loader.dataset) if not loader.drop_last else len(loader) * cfg.batch_size, epoch, cfg)
        train_loss, n = _train_epoch(model, loader, optimizer, loss_fn, device, bar)
        train_seconds += time.perf_counter() - t0
        n_seen += n
        probs, y, val_loss = predict(model, val, batch_size=max(cfg.batch_size, 32), device=device, loss_fn=loss_fn)
        val_auc = _auc(y, probs)
        val_acc = float((probs.argmax(1) == y).mean())
        if bar is not None:
            bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", val_auc=f"{val_auc:.3f}")
            bar.close()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(val_loss)
        improved = _is_better(val_auc, val_loss, best, monitor)
        if improved:
            best, best_state, since_best = (val_auc, val_loss), copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
        rows.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
                     "val_auc": val_auc, "val_acc": val_acc, "seconds": time.perf_counter() - t0,
                     "best": improved})
        if cfg.early_stopping is not None and since_best >= cfg.early_stopping:
            break
    model.load_state_dict(best_state)
    history = pd.DataFrame(rows)
    best_row = history[history["best"]].iloc[-1]
    return FitResult(model=model, history=history, best_epoch=int(best_row["epoch"]), monitor=monitor,
                     best_value=float(best_row[monitor]), seconds=time.perf_counter() - t_start,
                     images_per_s=n_seen / train_seconds if train_seconds else math.nan,
                     stopped_early=len(rows) < cfg.epochs)


def _bar(total: int, epoch: int, cfg: TrainConfig):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{cfg.epochs}", unit="img", leave=False)


# ------------------------------------------------------------------------------------- benchmark
def train_speed(model: nn.Module, image_size: int, *, batch_size: int = 16, steps: int = 5,
                warmup: int = 1, device: str = "auto") -> float:
    """Training images per second on random inputs (SGD steps with the focal loss).

    Measured 2026-11 on the 2-core AMD EPYC VM (torch 2.14.1, fp32, 2 threads, 128 px, batch 16,
    machine otherwise idle): ResNet-18 71 img/s, Conv8 (width 16) 224 img/s; ResNet-50 was ~3.5x
    slower than ResNet-18 in a contended measurement.
    """
    device = resolve_device(device)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch_size, 1, image_size, image_size, device=device)
    y = torch.randint(0, _num_classes(model) if _num_classes(model) > 0 else 2, (batch_size,), device=device)
    for i in range(warmup + steps):
        if i == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        opt.zero_grad()
        focal_loss(model(x), y).backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)
