"""U-Net and the model registry: shapes, configuration, errors."""

from __future__ import annotations

import pytest
import torch

from covid_lib.models import create_model, list_models, register_model
from covid_lib.models.unet import UNet


@pytest.mark.parametrize(
    ("base", "depth", "size", "batch"),
    [(4, 1, 32, 2), (8, 2, 64, 1), (8, 3, 48, 2), (4, 4, 64, 1), (4, 2, 96, 3)],
)
def test_output_has_input_size(base, depth, size, batch):
    net = create_model("unet", base_channels=base, depth=depth).eval()
    with torch.no_grad():
        out = net(torch.randn(batch, 1, size, size))
    assert out.shape == (batch, 1, size, size)


def test_non_square_input_and_out_channels():
    net = create_model("unet", base_channels=4, depth=2, in_chans=3, num_classes=2).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 48)).shape == (1, 2, 32, 48)


def test_widths_follow_base_and_depth():
    net = create_model("unet", base_channels=16, depth=4)
    assert isinstance(net, UNet) and net.multiple == 16
    assert net.config() == {"in_chans": 1, "out_chans": 1, "base_channels": 16, "depth": 4}
    assert net.down[-1][0].out_channels == 256  # bottleneck: 16 * 2**4
    n_params = sum(p.numel() for p in net.parameters())
    assert 1.8e6 < n_params < 2.1e6  # ~3.9 MB as float16


def test_bad_input_sizes_raise_clear_errors():
    net = create_model("unet", base_channels=4, depth=3)
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.zeros(1, 1, 36, 40))
    with pytest.raises(ValueError, match=r"expects \(N, 1, H, W\)"):
        net(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)


def test_registry():
    assert "unet" in list_models()
    with pytest.raises(ValueError, match="unknown model 'nope'.*unet"):
        create_model("nope")
    with pytest.raises(ValueError, match="pretrained"):
        create_model("unet", pretrained=True)
    with pytest.raises(TypeError, match="unexpected"):
        create_model("unet", widht=3)


def test_register_model_decorator_and_name_clash():
    @register_model(name="_test_tiny")
    def _tiny(**kwargs):
        return torch.nn.Identity()

    assert isinstance(create_model("_test_tiny"), torch.nn.Identity)
    with pytest.raises(ValueError, match="already registered"):
        @register_model(name="unet")
        def _other(**kwargs):  # pragma: no cover - never called
            return torch.nn.Identity()
