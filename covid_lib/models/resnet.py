"""ResNet-18 and ResNet-50 (He et al. 2016) for one-channel chest X-rays, built by timm.

Tartaglione et al. 2020 (Sec. III-C, Tables II-III) train ResNet-18 and ResNet-50 whose feature
extractor is pre-trained on a pneumonia task and then fine-tuned on COVID data. Their code starts
the pneumonia encoders from ImageNet weights and, for one input channel, keeps only the first slice
of the RGB first-layer kernel. No weights can be downloaded here, so every model starts from timm's
random initialisation (``pretrained=False``) with a native one-channel stem (``in_chans=1``); the
only pre-training is the pneumonia stage of :mod:`covid_lib.runs`. That is a deviation from the
paper's code, stated wherever results are reported.

The classifier head is timm's ``fc`` layer after global average pooling; replace it between
stages with ``model.reset_classifier(num_classes)``.

Example:
    >>> import torch
    >>> from covid_lib.models import create_model
    >>> net = create_model("resnet18", num_classes=2)  # in_chans=1
    >>> net(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 2])
    >>> net.reset_classifier(3); net(torch.zeros(1, 1, 64, 64)).shape
    torch.Size([1, 3])
"""

from __future__ import annotations

import timm
import torch.nn as nn

from covid_lib.models import register_model


def _timm_resnet(name: str, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    if kwargs.pop("pretrained", False):
        raise ValueError("pretrained weights are not available offline; pre-train with covid_lib.runs instead")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model
def resnet18(num_classes: int = 2, in_chans: int = 1, **kwargs) -> nn.Module:
    """ResNet-18 (11.2 M parameters with a 2-class head and a one-channel stem).

    Args:
        num_classes: outputs of the linear head.
        in_chans: input channels (1: grayscale X-rays).
        **kwargs: passed to :func:`timm.create_model` (e.g. ``drop_rate``).
    """
    return _timm_resnet("resnet18", num_classes, in_chans, **kwargs)


@register_model
def resnet50(num_classes: int = 2, in_chans: int = 1, **kwargs) -> nn.Module:
    """ResNet-50 (23.5 M parameters with a 2-class head and a one-channel stem).

    Args:
        num_classes: outputs of the linear head.
        in_chans: input channels (1: grayscale X-rays).
        **kwargs: passed to :func:`timm.create_model`.
    """
    return _timm_resnet("resnet50", num_classes, in_chans, **kwargs)
