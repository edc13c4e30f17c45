"""Model registry: one public factory, :func:`create_model`, over small named entrypoints.

Modelled on timm's registry (``timm/models/_registry.py``, ``_factory.py``): each architecture
module decorates a tiny entrypoint function with :func:`register_model`; :func:`create_model`
looks the name up and passes keyword arguments through. Nothing here downloads weights.

Example:
    >>> from covid_lib.models import create_model, list_models
    >>> "unet" in list_models()
    True
    >>> net = create_model("unet", base_channels=8, depth=2)
    >>> type(net).__name__
    'UNet'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch loads with the architectures, not with the registry
    import torch.nn as nn

_MODEL_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}

#: Modules imported on first use so that their ``@register_model`` entrypoints exist.
_ARCH_MODULES: tuple[str, ...] = (
    "covid_lib.models.unet", "covid_lib.models.resnet", "covid_lib.models.conv8",
)


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register ``fn`` as the entrypoint for ``name`` (default: the function's name).

    Usable bare (``@register_model``) or with a name (``@register_model(name="conv8")``).

    Raises:
        ValueError: the name is already registered to a different function.
    """

    def _register(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _MODEL_ENTRYPOINTS and _MODEL_ENTRYPOINTS[key] is not f:
            other = _MODEL_ENTRYPOINTS[key]
            if (other.__module__, other.__qualname__) != (f.__module__, f.__qualname__):
                raise ValueError(f"model {key!r} is already registered by {other.__module__}.{other.__qualname__}")
        _MODEL_ENTRYPOINTS[key] = f
        return f

    return _register(fn) if fn is not None else _register


def _import_architectures() -> None:
    for module in _ARCH_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """The registered model names, sorted."""
    _import_architectures()
    return sorted(_MODEL_ENTRYPOINTS)


def create_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build the model registered as ``name``; keyword arguments go to its entrypoint.

    Args:
        name: a registered name (see :func:`list_models`).
        pretrained: accepted for timm compatibility; no weights are downloaded here, so ``True``
            raises. Load a checkpoint with the architecture's own loader instead.
        **kwargs: architecture options, e.g. ``in_chans``, ``base_channels``, ``depth``.

    Raises:
        ValueError: unknown name (the message lists the known ones) or ``pretrained=True``.
    """
    _import_architectures()
    if name not in _MODEL_ENTRYPOINTS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(_MODEL_ENTRYPOINTS))}")
    if pretrained:
        raise ValueError("pretrained weights are not downloaded by covid_lib; train or load a checkpoint")
    return _MODEL_ENTRYPOINTS[name](**kwargs)


__all__ = ["create_model", "list_models", "register_model"]
