"""U-Net for binary segmentation (Ronneberger, Fischer, Brox 2015, arXiv:1505.04597).

Architecture, as in the original paper with two common modernisations (padded convolutions so
the output has the input's size, and batch normalisation after each convolution):

- **Encoder**: ``depth + 1`` levels. Level ``k`` is a *double conv* block (3x3 conv, BN, ReLU,
  twice) with ``base_channels * 2**k`` channels; levels are joined by 2x2 max pooling, so the
  bottleneck sees the input at ``1 / 2**depth`` of its side.
- **Decoder**: ``depth`` levels. Each upsamples by 2 with a 2x2 transposed convolution that halves
  the channels, concatenates the encoder features of the same resolution (the *skip connection*
  that carries fine spatial detail past the bottleneck), and applies a double conv block.
- **Head**: a 1x1 convolution to ``out_chans`` logits (one for a binary lung mask; apply a sigmoid
  for a probability).

Input sides must be divisible by ``2**depth``; :class:`UNet` raises a clear error otherwise.
With ``base_channels=16, depth=4`` (the committed lung model) it has about 1.9 M parameters
(3.9 MB as float16).

Example:
    >>> import torch
    >>> from covid_lib.models import create_model
    >>> net = create_model("unet", base_channels=16, depth=4)  # in_chans=1, out_chans=1
    >>> net(torch.zeros(2, 1, 128, 128)).shape
    torch.Size([2, 1, 128, 128])
"""

from __future__ import annotations

import torch
import torch.nn as nn

from covid_lib.models import register_model


class DoubleConv(nn.Sequential):
    """(3x3 conv, batch norm, ReLU) twice; padding keeps the spatial size."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__(
            nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_chans),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_chans),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Upsample x2 (transposed conv, channels halved), concatenate the skip, double conv."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_chans, out_chans, 2, stride=2)
        self.conv = DoubleConv(2 * out_chans, out_chans)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net with configurable width and depth.

    Args:
        in_chans: input channels (1 for grayscale chest X-rays).
        out_chans: output logit channels (1 for a binary mask).
        base_channels: channels of the first level; level ``k`` has ``base_channels * 2**k``.
        depth: number of 2x downsamplings (encoder levels below the first).
    """

    def __init__(self, in_chans: int = 1, out_chans: int = 1, base_channels: int = 16, depth: int = 4):
        super().__init__()
        if depth < 1 or base_channels < 1 or in_chans < 1 or out_chans < 1:
            raise ValueError(f"UNet needs depth, base_channels, in_chans, out_chans >= 1; got "
                             f"{depth=}, {base_channels=}, {in_chans=}, {out_chans=}")
        self.in_chans, self.out_chans = in_chans, out_chans
        self.base_channels, self.depth = base_channels, depth
        widths = [base_channels * 2**k for k in range(depth + 1)]
        self.stem = DoubleConv(in_chans, widths[0])
        self.down = nn.ModuleList(DoubleConv(widths[k], widths[k + 1]) for k in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(Up(widths[k + 1], widths[k]) for k in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_chans, 1)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def config(self) -> dict:
        """Constructor arguments, for checkpoints."""
        return {"in_chans": self.in_chans, "out_chans": self.out_chans,
                "base_channels": self.base_channels, "depth": self.depth}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"UNet expects (N, {self.in_chans}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"UNet(depth={self.depth}) needs H and W divisible by {self.multiple}; got {h}x{w}")
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)


@register_model
def unet(in_chans: int = 1, out_chans: int = 1, base_channels: int = 16, depth: int = 4, **kwargs) -> UNet:
    """U-Net (Ronneberger et al. 2015); see :class:`UNet`. ``num_classes`` is an alias of ``out_chans``."""
    if "num_classes" in kwargs:
        out_chans = kwargs.pop("num_classes")
    if kwargs:
        raise TypeError(f"unet() got unexpected options {sorted(kwargs)}")
    return UNet(in_chans=in_chans, out_chans=out_chans, base_channels=base_channels, depth=depth)
