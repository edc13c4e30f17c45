"""Classifier architectures: shapes, one-channel input, parameter counts, head replacement, errors."""

from __future__ import annotations

import pytest
import torch

from covid_lib.models import create_model, list_models

CLASSIFIERS = {"resnet18": 11_171_266, "resnet50": 23_505_858, "conv8": 113_362}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered():
    assert set(CLASSIFIERS) <= set(list_models())


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_one_channel_forward_and_param_count(name):
    net = create_model(name, num_classes=2).eval()
    assert n_params(net) == CLASSIFIERS[name]
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 2)
    with pytest.raises(RuntimeError):  # three channels are not accepted: the stem is one-channel
        net(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("name", ["resnet18", "conv8"])
def test_reset_classifier_keeps_encoder(name):
    torch.manual_seed(0)
    net = create_model(name, num_classes=3)
    before = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("fc.")}
    net.reset_classifier(2)
    assert net.get_classifier().out_features == 2
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert net.eval()(torch.zeros(1, 1, 32, 32)).shape == (1, 2)


def test_conv8_layout_has_eight_convs_and_one_linear():
    net = create_model("conv8")
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 8 and len(linears) == 1
    assert convs[0].in_channels == 1


def test_conv8_width_scales():
    assert n_params(create_model("conv8", width=8)) < n_params(create_model("conv8", width=16))


def test_unknown_arch_and_pretrained_raise():
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*resnet18"):
        create_model("resnet19")
    with pytest.raises(ValueError, match="pretrained"):
        create_model("resnet18", pretrained=True)


@pytest.mark.parametrize("name", ["resnet18", "conv8"])
def test_forward_features_is_a_map_and_forward_head_pools_it(name):
    """timm's interface, which CAM and Grad-CAM rely on: features are a (N, C, h, w) map."""
    net = create_model(name, num_classes=2).eval()
    x = torch.randn(2, 1, 64, 64)
    fmap = net.forward_features(x)
    assert fmap.ndim == 4 and fmap.shape[:2] == (2, net.num_features)
    assert torch.allclose(net.forward_head(fmap), net(x), atol=1e-5)
    assert net.forward_head(fmap, pre_logits=True).shape == (2, net.num_features)
