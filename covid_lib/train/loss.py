"""Training losses: the focal loss of Tartaglione et al. 2020 (their code, gamma = 2) and cross-entropy.

Example:
    >>> import torch
    >>> logits, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    >>> p = torch.softmax(logits, 1)[0, 0]
    >>> bool(torch.isclose(focal_loss(logits, y, gamma=2.0), -(1 - p) ** 2 * torch.log(p)))
    True
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LOSSES = ("focal", "ce")


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               reduction: str = "mean") -> torch.Tensor:
    """Multi-class focal loss ``-(1 - p_t)**gamma * log p_t`` (Lin et al. 2017), no ``alpha``.

    Computed in float32 whatever the logits' precision (bf16 autocast).

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
    raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
