"""Conv8: a small from-scratch baseline with 8 convolutional layers and one linear layer.

Tartaglione et al. 2020 (Sec. IV-D) compare ResNets with "a smaller artificial neural network,
made of 8 convolutional layers and a final fully-connected layer, which takes inspiration from
the ALL-CNN-C architecture" (Springenberg et al. 2015) and report BA 0.61, DOR 2.38 on CORDA. They
publish neither its widths nor its strides, so the layout below is ours. Like ALL-CNN-C it
downsamples with stride-2 convolutions instead of pooling and ends with a 1x1 convolution and
global average pooling; unlike it, it has batch normalisation after every convolution (it trains
with the same SGD settings as the ResNets) and a linear head instead of a 1x1 class convolution.

Layout (``w = width``, every conv followed by BatchNorm and ReLU):

=====  ======  =======  ======  =========================
layer  kernel  stride   out     side (128 px input)
=====  ======  =======  ======  =========================
1      3x3     1        w       128
2      3x3     2        w       64
3      3x3     1        2w      64
4      3x3     2        2w      32
5      3x3     1        4w      32
6      3x3     2        4w      16
7      3x3     1        4w      16
8      1x1     1        4w      16
head   global average pool, dropout, linear 4w -> num_classes
=====  ======  =======  ======  =========================

With ``width=16`` (default) it has about 0.1 M parameters, ~100x fewer than ResNet-18.

Example:
    >>> import torch
    >>> from covid_lib.models import create_model
    >>> net = create_model("conv8", num_classes=2)  # in_chans=1, width=16
    >>> net(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 2])
    >>> sum(p.numel() for p in net.parameters())
    113362
"""

from __future__ import annotations

import torch
import torch.nn as nn

from covid_lib.models import register_model

#: (output-width multiplier, kernel, stride) of the eight convolutions.
LAYOUT: tuple[tuple[int, int, int], ...] = (
    (1, 3, 1), (1, 3, 2), (2, 3, 1), (2, 3, 2), (4, 3, 1), (4, 3, 2), (4, 3, 1), (4, 1, 1),
)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Conv8(nn.Module):
    """Eight conv-BN-ReLU layers (see the module docstring), global pooling, a linear head.

    Has timm's head interface (``num_features``, ``get_classifier``, ``reset_classifier``), so the
    training code treats it like the ResNets.

    Args:
        num_classes: outputs of the linear head.
        in_chans: input channels (1: grayscale X-rays).
        width: channels of the first layer; later layers use 2x and 4x.
        drop_rate: dropout before the head.
    """

    def __init__(self, num_classes: int = 2, in_chans: int = 1, width: int = 16, drop_rate: float = 0.0):
        super().__init__()
        layers, cin = [], in_chans
        for mult, kernel, stride in LAYOUT:
            layers.append(_conv_bn_relu(cin, width * mult, kernel, stride))
            cin = width * mult
        self.features = nn.Sequential(*layers)
        self.num_features = cin
        self.drop_rate = drop_rate
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        """The linear head."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one with ``num_classes`` outputs."""
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, shape (N, num_features, H/8, W/8), as timm models return it
        (CAM and Grad-CAM need the map, not the pooled vector)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, dropout and the linear head (timm's interface); with
        ``pre_logits`` the pooled (N, num_features) vector."""
        x = torch.flatten(self.pool(x), 1)
        x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def conv8(num_classes: int = 2, in_chans: int = 1, width: int = 16, **kwargs) -> Conv8:
    """Conv8 baseline (paper Sec. IV-D); see :class:`Conv8`."""
    return Conv8(num_classes=num_classes, in_chans=in_chans, width=width, **kwargs)
