"""Training one stage: optimiser, schedule, early stopping, best checkpoint on validation AUC.

Follows Tartaglione et al. 2020, Sec. III-C, and their code where the text is silent:

- **Two stages.** The feature extractor is pre-trained on a pneumonia task (ChestXRay = our
  ``kermany``, three classes; RSNA = our ``nih``, pneumonia yes/no), then the head is replaced
  (:func:`replace_head`) and the *whole* network is fine-tuned on the COVID composition: the paper
  argues against freezing the encoder (Sec. III-C, IV-A). Both stages use :func:`fit` with the same
  settings.
- **Loss.** Focal loss, gamma 2 in their code (:mod:`covid_lib.train.loss`).
- **Optimiser.** ``paper`` profile: SGD (lr 0.1, weight decay 1e-3, momentum 0.9: not published)
  with ReduceLROnPlateau on the validation loss (patience 15). ``cpu`` profile: their encoders
  started from ImageNet weights, ours cannot (none can be downloaded), and SGD at lr 0.1 from
  random initialisation on a few hundred images does not learn (the first ``cpu`` run's
  pre-training stayed at chance, 3-class accuracy 0.30). It uses AdamW (lr 1e-3, weight decay
  0.05) with a one-cycle schedule (warm-up over the first 20 % of steps, cosine decay), stepped
  per batch.
- **Model selection.** The epoch with the highest validation AUC (the paper's code selects on
  validation AUC; macro one-vs-rest AUC for the three-class pre-training), ties broken by the
  lower validation loss; validation loss when the validation set holds a single class. Early
  stopping (not in the paper: the ``cpu`` profile's budget) counts epochs without a new best.
- **Did not learn.** A run whose best validation AUC stays under :data:`DID_NOT_LEARN_AUC` is
  flagged (:attr:`FitResult.did_not_learn`) in its record and every table that uses it.

Runs are seeded: the same seed, device, precision and thread count give the same weights. Batch
order and augmentation draw from one CPU generator seeded by the config.

**Resume.** With ``TrainConfig.resume_file`` set, every finished epoch is written there (atomically:
a temporary file, then ``os.replace``): the weights, optimiser, schedule, the best epoch's weights
and score, the early-stopping count, the history so far and every random state the loop draws
from (the batch generator; torch, CUDA, numpy and Python ``random``). A fit that finds the file
continues at the next epoch and ends with the weights and history of an uninterrupted fit; a file
written for another run or other settings (``resume_key``, a hash of the config and the data
sizes) is refused. The caller deletes it once the run is recorded
(:func:`covid_lib.runs.records.resume_path`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from covid_lib.profiles import OPTIMIZERS, SCHEDULES, TRAINING_DEFAULTS, Profile, get_profile
from covid_lib.train.loss import make_loss
from covid_lib.train.predict import auc, predict
from covid_lib.train.runtime import Runtime, seed_everything

#: Best validation AUC under which a run is flagged "did not learn" (issue: never averaged in).
DID_NOT_LEARN_AUC = 0.6


_D = TRAINING_DEFAULTS  # the profiles' defaults: one home for the training settings


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training stage (see :meth:`from_profile` and :class:`~covid_lib.profiles.Profile`).

    Attributes:
        epochs, batch_size, optimizer, lr, momentum, weight_decay, schedule, warmup, lr_patience,
            early_stopping, loss, focal_gamma, precision, threads, deterministic: as in the profile
            (defaults: :data:`covid_lib.profiles.TRAINING_DEFAULTS`).
        seed: seeds the batch order and augmentation (the caller seeds the weights' init).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        channels_last: channels-last memory format for the model and its inputs.
        progress: show a tqdm bar per epoch.
        resume_file: where each finished epoch's state is written and a stopped fit resumes from
            (None: no resume; not a training setting, so not in the config hash).
        resume_key: what the resume file must belong to (a run id); a file of another key is refused.
    """

    epochs: int = 1
    batch_size: int = 8
    optimizer: str = _D["optimizer"]
    lr: float = _D["lr"]
    momentum: float = _D["momentum"]
    weight_decay: float = _D["weight_decay"]
    schedule: str = _D["schedule"]
    warmup: float = _D["warmup"]
    lr_patience: int = _D["lr_patience"]
    early_stopping: int | None = _D["early_stopping"]
    loss: str = _D["loss"]
    focal_gamma: float = _D["focal_gamma"]
    precision: str = _D["precision"]
    threads: int | None = _D["threads"]
    deterministic: bool = _D["deterministic"]
    seed: int = 0
    device: str = "auto"
    channels_last: bool = True
    progress: bool = True
    resume_file: str | None = None
    resume_key: str = ""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")

    @classmethod
    def from_profile(cls, profile: str | Profile, **overrides) -> "TrainConfig":
        """The training settings of a compute profile, with ``overrides`` applied (None: keep)."""
        p = get_profile(profile)
        shared = {f.name for f in fields(cls)} & {f.name for f in fields(Profile)}  # the training settings
        base = cls(**{name: getattr(p, name) for name in shared})
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """What :func:`fit` returns: the model with its best weights loaded, and the learning curve."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    monitor: str
    best_value: float
    seconds: float
    images_per_s: float
    stopped_early: bool
    runtime: dict
    resumed_at: int | None = None
    sessions: int = 1
    seconds_before: float = 0.0

    @property
    def did_not_learn(self) -> bool:
        """Best validation AUC under :data:`DID_NOT_LEARN_AUC` (False when AUC was not monitored)."""
        return self.monitor == "val_auc" and not self.best_value >= DID_NOT_LEARN_AUC

    @property
    def resume_info(self) -> dict | None:
        """For ``timings.json``: the epoch this fit resumed at, its sessions and the fit seconds of
        the earlier ones (``seconds`` sums them all); None when it ran in one go."""
        if self.resumed_at is None:
            return None
        return {"at_epoch": self.resumed_at, "sessions": self.sessions, "earlier_fit_s": self.seconds_before}


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the classifier for a new one with ``num_classes`` outputs (between the stages).

    Raises:
        TypeError: the model has no timm-style ``reset_classifier``.
    """
    if not hasattr(model, "reset_classifier"):
        raise TypeError(f"{type(model).__name__} has no reset_classifier(); cannot replace its head")
    model.reset_classifier(num_classes)
    return model


# --------------------------------------------------------------------------------------- helpers
def _train_batches(data: Dataset, cfg: TrainConfig, generator: torch.Generator, device: str
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(data, "batches"):
        for x, y, _ in data.batches(cfg.batch_size, shuffle=True, generator=generator, device=device,
                                    drop_single=True):
            yield x, y
        return
    n = len(data)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                        drop_last=n > cfg.batch_size and n % cfg.batch_size == 1)
    for x, y, _ in loader:
        yield x.to(device), y.to(device)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    steps = math.ceil(n / batch_size)
    return steps - 1 if n > 1 and n % batch_size == 1 else steps


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(steps, 2),
                                                   pct_start=cfg.warmup)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=cfg.lr_patience)


def _is_better(value: float, loss: float, best: tuple[float, float] | None, monitor: str) -> bool:
    if best is None:
        return True
    if monitor == "val_loss":
        return loss < best[1]
    return value > best[0] or (value == best[0] and loss < best[1])


def _check_data(train: Dataset, val: Dataset) -> None:
    if len(train) == 0:
        raise ValueError("empty training set")
    if len(val) == 0:
        raise ValueError("empty validation set: model selection needs one (paper: 20% of training data)")


def _bar(total: int, epoch: int, cfg: TrainConfig):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{cfg.epochs}", unit="img", leave=False)


def _labels(data: Dataset) -> np.ndarray:
    labels = getattr(data, "labels", None)
    return np.asarray(labels) if labels is not None else np.asarray([int(data[i][1]) for i in range(len(data))])


# ----------------------------------------------------------------------------------------- resume
_RESUME_FORMAT = 1
_NOT_HASHED = {"progress", "resume_file", "resume_key"}


def _resume_hash(cfg: TrainConfig, train: Dataset, val: Dataset, watch: dict | None) -> str:
    """What a resume file must match besides its key: the training settings and the data sizes."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    settings.update(n_train=len(train), n_val=len(val), watch=sorted(watch or {}))
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rng_state(generator: torch.Generator) -> dict:
    return {"generator": generator.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(generator: torch.Generator, state: dict) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _write_resume(path: Path, state: dict) -> None:
    """``state`` to ``path`` atomically: a stopped write leaves the previous epoch's file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_resume(path: Path, key: str, config_hash: str) -> dict:
    """The state in ``path``; a file of another run or other settings is refused in one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - one line that says which file to delete
        raise ValueError(f"resume file {path} cannot be read ({type(error).__name__}); delete it to start "
                         "the run afresh") from None
    if (state.get("format"), state.get("key"), state.get("config")) != (_RESUME_FORMAT, key, config_hash):
        raise ValueError(f"resume file {path} belongs to run {state.get('key')!r} (config {state.get('config')}), "
                         f"not to {key!r} (config {config_hash}): refused; delete it to start afresh")
    return state


# -------------------------------------------------------------------------------------------- fit
def train_epoch(model: nn.Module, batches, optimizer, loss_fn, rt: Runtime, scheduler=None, bar=None
                ) -> tuple[float, float, int]:
    """One pass over ``batches``; returns the mean loss, the AUC of the training outputs and the count.

    ``scheduler`` (one-cycle) is stepped after every batch.
    """
    model.train()
    total, n, probs, labels = 0.0, 0, [], []
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        with rt.autocast():
            logits = model(rt.prepare_input(x))
        loss = loss_fn(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()}; lower the learning rate")
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(y)
        n += len(y)
        probs.append(torch.softmax(logits.detach().float(), 1).cpu().numpy())
        labels.append(y.cpu().numpy())
        if bar is not None:
            bar.update(len(y))
            bar.set_postfix(loss=f"{total / n:.4f}")
    train_auc = auc(np.concatenate(labels), np.concatenate(probs)) if n else float("nan")
    return total / max(n, 1), train_auc, n


def fit(model: nn.Module, train: Dataset, val: Dataset, config: TrainConfig | None = None, *,
        watch: dict[str, Dataset] | None = None, after_epoch: Callable[[int], None] | None = None) -> FitResult:
    """Train ``model`` on ``train``; keep the weights of the best validation epoch.

    Args:
        model: a classifier whose outputs match the labels' classes (weights already initialised:
            seed before creating it).
        train, val: datasets of ``(image, label, group)``; :class:`~covid_lib.train.XrayDataset`
            takes the fast batched path (augmentation per batch).
        config: :class:`TrainConfig` (default: its defaults).
        watch: more datasets scored after every epoch, never used for selection or stopping:
            ``<name>_auc`` joins the history (e.g. a planted confounder's flipped validation set).
        after_epoch: called with the epoch number after each epoch (and its resume file) is done.

    Returns:
        :class:`FitResult`; ``history`` has one row per epoch: ``epoch, lr, train_loss, train_auc,
        val_loss, val_auc, val_acc, seconds, images_per_s, best``.
    """
    cfg = config or TrainConfig()
    _check_data(train, val)
    rt = Runtime.create(cfg.device, precision=cfg.precision, threads=cfg.threads,
                        channels_last=cfg.channels_last, deterministic=cfg.deterministic)
    seed_everything(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = rt.prepare_model(model)
    loss_fn = make_loss(cfg.loss, cfg.focal_gamma)
    optimizer = _optimizer(model, cfg)
    steps = _steps_per_epoch(len(train), cfg.batch_size)
    scheduler = _scheduler(optimizer, cfg, cfg.epochs * steps)
    per_step = scheduler if cfg.schedule == "onecycle" else None
    monitor = "val_auc" if len(np.unique(_labels(val))) > 1 else "val_loss"
    rows, best, best_state, since_best, n_seen, train_seconds = [], None, None, 0, 0, 0.0
    start, done, sessions, seconds_before, resumed_at = 1, False, 1, 0.0, None
    resume = Path(cfg.resume_file) if cfg.resume_file else None
    config_hash = _resume_hash(cfg, train, val, watch) if resume else ""
    if resume is not None and resume.exists():
        state = _read_resume(resume, cfg.resume_key, config_hash)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rows, best, best_state, since_best = state["rows"], state["best"], state["best_state"], state["since_best"]
        n_seen, train_seconds, seconds_before = state["n_seen"], state["train_seconds"], state["seconds"]
        start, done, sessions = state["epoch"] + 1, state["done"], state["sessions"] + 1
        _set_rng_state(generator, state["rng"])
        resumed_at = start
        name = cfg.resume_key or resume
        print(f"resuming {name} after its last epoch ({state['epoch']}/{cfg.epochs}: training finished)" if done
              else f"resuming {name} at epoch {start}/{cfg.epochs}", file=sys.stderr, flush=True)
    t_start = time.perf_counter()
    for epoch in range(start, cfg.epochs + 1):
        if done:
            break
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        bar = _bar(steps * cfg.batch_size if hasattr(train, "batches") else len(train), epoch, cfg)
        train_loss, train_auc, n = train_epoch(model, _train_batches(train, cfg, generator, rt.device),
                                               optimizer, loss_fn, rt, per_step, bar)
        t_train = time.perf_counter() - t0
        train_seconds += t_train
        n_seen += n
        probs, y, val_loss = predict(model, val, batch_size=max(cfg.batch_size, 64), loss_fn=loss_fn, runtime=rt)
        val_auc = auc(y, probs)
        val_acc = float((probs.argmax(1) == y).mean())
        watched = {}
        for name, data in (watch or {}).items():
            w_probs, w_y, _ = predict(model, data, batch_size=max(cfg.batch_size, 64), runtime=rt)
            watched[f"{name}_auc"] = auc(w_y, w_probs)
        if bar is not None:
            bar.close()
        if per_step is None:
            scheduler.step(val_loss)
        improved = _is_better(val_auc, val_loss, best, monitor)
        if improved:
            best, best_state, since_best = (val_auc, val_loss), copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
        rows.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_auc": train_auc,
                     "val_loss": val_loss, "val_auc": val_auc, "val_acc": val_acc,
                     "seconds": time.perf_counter() - t0, "images_per_s": n / t_train if t_train else math.nan,
                     "best": improved, **watched})
        done = epoch == cfg.epochs or (cfg.early_stopping is not None and since_best >= cfg.early_stopping)
        if resume is not None:
            _write_resume(resume, {
                "format": _RESUME_FORMAT, "key": cfg.resume_key, "config": config_hash, "epoch": epoch,
                "done": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best": best, "best_state": best_state,
                "since_best": since_best, "rows": rows, "n_seen": n_seen, "train_seconds": train_seconds,
                "seconds": seconds_before + time.perf_counter() - t_start, "sessions": sessions,
                "rng": _rng_state(generator)})
        if after_epoch is not None:
            after_epoch(epoch)
    model.load_state_dict(best_state)
    history = pd.DataFrame(rows)
    best_row = history[history["best"]].iloc[-1]
    return FitResult(model=model, history=history, best_epoch=int(best_row["epoch"]), monitor=monitor,
                     best_value=float(best_row[monitor]), seconds=seconds_before + time.perf_counter() - t_start,
                     images_per_s=n_seen / train_seconds if train_seconds else math.nan,
                     stopped_early=len(rows) < cfg.epochs, runtime=rt.to_dict(), resumed_at=resumed_at,
                     sessions=sessions, seconds_before=seconds_before)
