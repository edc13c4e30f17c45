"""The frozen encoder with a small head of Ben Ahmed et al. 2021 ("Model training", Table 2).

Their Finetune1 model keeps the convolutional layers of a pre-trained ResNet-50 frozen except
the batch-normalisation layers ("to update the mean and variance statistics of the new dataset"),
and adds global average pooling, a dense layer of 64 units with ReLU, dropout 0.5, batch
normalisation and one sigmoid output (184 K trainable parameters). Here the encoder is our
pneumonia-pre-trained ResNet (no ImageNet), and the last layer has **two softmax outputs** (the
project's heads and losses are two-class) instead of one sigmoid: a departure.

Example:
    >>> import torch
    >>> from covid_lib.models import create_model
    >>> net = freeze_encoder(with_small_head(create_model("resnet18", num_classes=3)))
    >>> net.train()(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 2])
    >>> trainable_parameters(net) < 50_000
    True
"""

from __future__ import annotations

import torch.nn as nn

HEAD_WIDTH = 64
HEAD_DROPOUT = 0.5


def small_head(in_features: int, num_classes: int = 2) -> nn.Sequential:
    """Dense 64 + ReLU, dropout 0.5, batch norm, dense ``num_classes`` (their Table 2, pooling aside)."""
    return nn.Sequential(nn.Linear(in_features, HEAD_WIDTH), nn.ReLU(inplace=True), nn.Dropout(HEAD_DROPOUT),
                         nn.BatchNorm1d(HEAD_WIDTH), nn.Linear(HEAD_WIDTH, num_classes))


def with_small_head(model: nn.Module, num_classes: int = 2) -> nn.Module:
    """``model`` (a timm ResNet: global average pooling, then ``fc``) with :func:`small_head` as ``fc``."""
    if not hasattr(model, "fc") or not hasattr(model, "num_features"):
        raise TypeError(f"{type(model).__name__} has no fc head to replace")
    model.fc = small_head(model.num_features, num_classes)
    return model


def freeze_encoder(model: nn.Module) -> nn.Module:
    """Freeze every parameter but those of batch-norm layers and of the ``fc`` head (in place).

    Batch-norm layers stay trainable and, in train mode, keep updating their running statistics,
    as in Ben Ahmed et al.'s Finetune1.
    """
    trainable = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in m.parameters(recurse=False)}
    trainable |= {id(p) for p in model.fc.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """How many parameters require gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
