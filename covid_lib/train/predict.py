"""Batched inference: softmax probabilities of a classifier over a dataset, and their AUC.

One loop serves validation during :func:`covid_lib.train.fit`, the test scores of
:mod:`covid_lib.evaluate` and the pre-training records of :mod:`covid_lib.runs`.

Example:
    >>> import numpy as np
    >>> auc(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    1.0
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Dataset

from covid_lib.train.runtime import Runtime


def auc(y: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC of class 1 (two classes) or the macro one-vs-rest AUC (more); NaN when a class is absent."""
    classes = np.unique(y)
    if len(classes) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    if len(classes) < probs.shape[1]:
        return float("nan")
    return float(roc_auc_score(y, probs, multi_class="ovr", average="macro"))


def num_classes(model: nn.Module) -> int:
    """Outputs of a timm-style model's linear head (-1 when it has none)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return int(head.out_features) if isinstance(head, nn.Linear) else -1


def _batches(data: Dataset, batch_size: int, device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(data, "batches"):  # XrayDataset: in-memory crops, no per-item Python
        for x, y, _ in data.batches(batch_size, device=device):
            yield x, y
        return
    for x, y, _ in DataLoader(data, batch_size=batch_size, shuffle=False):
        yield x.to(device), y.to(device)


def predict(model: nn.Module, data: Dataset, *, batch_size: int = 64, device: str = "auto",
            loss_fn: Callable | None = None, runtime: Runtime | None = None
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax probabilities (N, C), labels (N,) and the mean loss (NaN without ``loss_fn``).

    Args:
        runtime: device and precision (default: ``Runtime.create(device, precision="fp32")``).
    """
    rt = runtime or Runtime.create(device, precision="fp32", threads=torch.get_num_threads())
    model = rt.prepare_model(model).eval()
    probs, labels, total = [], [], 0.0
    with torch.inference_mode(), rt.autocast():
        for x, y in _batches(data, batch_size, rt.device):
            logits = model(rt.prepare_input(x)).float()
            if loss_fn is not None:
                total += float(loss_fn(logits, y)) * len(y)
            probs.append(torch.softmax(logits, 1).cpu().numpy())
            labels.append(y.cpu().numpy())
    n = sum(len(y) for y in labels)
    k = num_classes(model)
    probs_arr = np.concatenate(probs) if probs else np.zeros((0, max(k, 1)), np.float32)
    labels_arr = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return probs_arr, labels_arr, (total / n if n and loss_fn is not None else float("nan"))
