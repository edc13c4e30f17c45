"""The lung U-Net's checkpoint: where it lives, its hash, how to save and load it (Sec. III-B).

The pre-processing chain (:mod:`covid_lib.preprocess`) masks every image with a U-Net trained
once by ``python -m covid_lib segment train`` (:mod:`covid_lib.segment`) and committed as
``weights/unet_lungs.pt``: a float16 state dict with the model's configuration and input size.
This module sits with the models, below both, so that the chain loads the weights without
importing the training code. torch is imported only when a checkpoint is saved or loaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from covid_lib.models import create_model
from covid_lib.paths import REPO_ROOT

#: The committed lung U-Net.
DEFAULT_WEIGHTS = REPO_ROOT / "weights" / "unet_lungs.pt"
#: The ``format`` field of a covid_lib U-Net checkpoint.
CHECKPOINT_FORMAT = "covid_lib.unet/1"
_MISSING = "no U-Net weights at {path}; train them with `python -m covid_lib segment train`"


def file_hash(path: str | os.PathLike, n: int = 12) -> str:
    """sha256 prefix of a checkpoint's bytes (names the pre-processing cache of its masks).

    Raises:
        FileNotFoundError: no file at ``path`` (the message says how to make one).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(_MISSING.format(path=path) + " or pass Pipeline(weights=...)")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:n]


def save_unet(model, path: str | os.PathLike, *, input_size: int, meta: dict | None = None) -> Path:
    """Save a U-Net as a float16 state dict with its config and input size."""
    import torch

    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "model": "unet", "config": model.config(),
               "input_size": int(input_size), "threshold": 0.5,
               "input": "covid_lib.preprocess.segmenter_input: global histogram equalisation, "
                        "bilinear resize to input_size x input_size, [0, 1]",
               "meta": meta or {}, "state_dict": state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_unet(path: str | os.PathLike | None = None, *, device: str = "cpu"):
    """Load a U-Net saved by :func:`save_unet` (default: the committed ``weights/unet_lungs.pt``).

    The file is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
    no pickled code.

    Returns:
        The model in eval mode, float32, on ``device``, with ``input_size`` and ``meta`` attributes.

    Raises:
        FileNotFoundError: no file at ``path`` (the message says how to make one).
        ValueError: the file is not a covid_lib U-Net checkpoint.
    """
    import torch

    path = Path(path) if path else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(_MISSING.format(path=path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise ValueError(f"cannot read U-Net checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a covid_lib U-Net checkpoint (format {CHECKPOINT_FORMAT})")
    model = create_model(payload["model"], **payload["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    model.input_size = int(payload["input_size"])
    model.meta = payload.get("meta", {})
    return model.to(device).eval()


__all__ = ["CHECKPOINT_FORMAT", "DEFAULT_WEIGHTS", "file_hash", "load_unet", "save_unet"]
