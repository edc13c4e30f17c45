"""Compute profiles: one name picks input size, epochs, batch, optimiser, precision, seeds and data limits.

Every chapter takes a ``profile`` parameter; the book states which profile produced each chapter.

- ``smoke``: tiny images, one epoch, a handful of images per source, fp32. For tests and CI; its
  numbers mean nothing. fp32 so that a smoke run has the same id and weights on CPUs with and
  without native bf16 (a bf16 run becomes an fp32 twin with another id where the CPU lacks it): the
  suite behaves alike on every machine; the bf16 path has tests of its own.
- ``cpu``: what a 2-core machine finishes in reasonable time, and a recipe that learns from random
  initialisation (no ImageNet weights exist here): 128 px, AdamW (lr 1e-3, weight decay 0.05)
  with a one-cycle schedule, up to 30 epochs with early stopping on the validation AUC, focal
  loss, bf16 autocast and channels-last. The committed book is executed with it unless a GPU run
  replaced a chapter.
- ``paper``: the published settings of Tartaglione et al. 2020 as read from their code (Resize 256,
  CenterCrop 224, 100 epochs, batch 4, SGD lr 0.1 with weight decay 1e-3, ReduceLROnPlateau with
  patience 15, focal loss with gamma 2), for a GPU box.

Example:
    >>> from covid_lib.profiles import get_profile
    >>> p = get_profile("paper")
    >>> (p.resize_size, p.input_size, p.epochs, p.batch_size, p.optimizer, p.lr, p.focal_gamma)
    (256, 224, 100, 4, 'sgd', 0.1, 2.0)
"""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, fields


@dataclass(frozen=True)
class Profile:
    """A named set of compute settings; frozen so that it can be hashed into run ids.

    The one home of the training settings' defaults (the project's recipe: AdamW one-cycle, focal
    loss, bf16): :class:`covid_lib.train.TrainConfig` takes its defaults from here
    (:data:`TRAINING_DEFAULTS`); the ``paper`` profile spells out the published SGD settings.

    Attributes:
        name: the profile's name (a key of :data:`PROFILES`).
        description: one line saying what it is for.
        input_size: side of the square network input (after the centre crop), in pixels.
        resize_size: the side images are resized to (and cached at) before the centre crop.
        epochs: maximum training epochs per stage (pre-training and fine-tuning).
        batch_size: images per optimisation step.
        optimizer: ``"sgd"`` (with momentum) or ``"adamw"``.
        lr: initial (plateau) or peak (one-cycle) learning rate.
        momentum: SGD momentum.
        weight_decay: weight decay (L2 for SGD, decoupled for AdamW).
        schedule: ``"plateau"`` (ReduceLROnPlateau on the validation loss, factor 0.1) or
            ``"onecycle"`` (linear-cosine warm-up to ``lr`` then cosine decay, per step).
        warmup: share of the one-cycle steps spent warming up.
        lr_patience: epochs without validation improvement before the plateau schedule lowers
            the rate.
        early_stopping: stop after this many epochs without a new best (None: never).
        loss: training loss (``"focal"`` or ``"ce"``).
        focal_gamma: focusing parameter of the focal loss.
        precision: ``"bf16"`` (autocast where the hardware has it) or ``"fp32"``.
        seeds: the seeds of the repeated-seed grid (:mod:`covid_lib.grid`, ``seeds``).
        max_images: cap on images per source and split (a stratified subset), or None for all.
        threads: CPU threads (None: every core this process may use).
        deterministic: deterministic cuDNN algorithms (CUDA) instead of ``cudnn.benchmark``.
    """

    name: str
    description: str
    input_size: int
    resize_size: int
    epochs: int
    batch_size: int
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    schedule: str = "onecycle"
    warmup: float = 0.2
    lr_patience: int = 15
    early_stopping: int | None = None
    loss: str = "focal"
    focal_gamma: float = 2.0
    precision: str = "bf16"
    seeds: tuple[int, ...] = (0,)
    max_images: int | None = None
    threads: int | None = None
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.resize_size < self.input_size:
            raise ValueError(f"profile {self.name!r}: resize_size {self.resize_size} < input_size {self.input_size}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"profile {self.name!r}: epochs and batch_size must be >= 1")
        if not self.seeds:
            raise ValueError(f"profile {self.name!r}: at least one seed is needed")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"profile {self.name!r}: max_images must be None or >= 1")
        for field_name, value, allowed in (("optimizer", self.optimizer, OPTIMIZERS),
                                           ("schedule", self.schedule, SCHEDULES),
                                           ("precision", self.precision, ("fp32", "bf16"))):
            if value not in allowed:
                raise ValueError(f"profile {self.name!r}: {field_name} {value!r} not in {allowed}")

    def to_dict(self) -> dict:
        """The settings as plain JSON-able values (tuples become lists)."""
        out = asdict(self)
        out["seeds"] = list(self.seeds)
        return out


#: The defaults of :class:`Profile`'s settings that have one, by field name (what
#: :class:`covid_lib.train.TrainConfig` defaults to).
TRAINING_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(Profile) if f.default is not MISSING}

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("plateau", "onecycle")

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="smoke",
            description="tests and CI: tiny images, one epoch, 16 images per source, fp32; numbers mean nothing",
            input_size=64, resize_size=72, epochs=1, batch_size=8, optimizer="adamw", lr=1e-3,
            weight_decay=0.05, schedule="onecycle", early_stopping=None, seeds=(0, 1), max_images=16,
            precision="fp32",
        ),
        Profile(
            name="cpu",
            description="2 CPU cores, from scratch: 128 px, AdamW one-cycle, 30 epochs, early stopping, bf16",
            input_size=128, resize_size=144, epochs=30, batch_size=32, optimizer="adamw", lr=1e-3,
            weight_decay=0.05, schedule="onecycle", warmup=0.2, early_stopping=10, seeds=(0, 1, 2),
        ),
        Profile(
            name="paper",
            description="the published settings (Resize 256, CenterCrop 224, 100 epochs, batch 4, "
            "SGD lr 0.1, focal loss gamma 2), for a GPU",
            input_size=224, resize_size=256, epochs=100, batch_size=4, optimizer="sgd", lr=0.1, momentum=0.9,
            weight_decay=1e-3, schedule="plateau", lr_patience=15, early_stopping=None, seeds=(0, 1, 2),
            deterministic=False,
        ),
    )
}


def get_profile(name: str | Profile) -> Profile:
    """Return the profile called ``name`` (a :class:`Profile` passes through unchanged).

    Raises:
        ValueError: ``name`` is not a known profile; the message lists the valid names.
    """
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}") from None


def profile_fields() -> list[str]:
    """The names of a profile's settings, in declaration order."""
    return [f.name for f in fields(Profile)]


#: The devices a run, a chapter or a command accepts: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(device: str) -> str:
    """``device`` when it names a device (:data:`DEVICES`); whether it is present is not checked
    (:func:`resolve_device` does), so this needs no torch.

    Raises:
        ValueError: any other value, e.g. ``gpu``.
    """
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"unknown device {device!r}; choose auto (CUDA when present), cpu, cuda or cuda:N")
    return device


def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is visible, else ``"cpu"``; ``cpu``, ``cuda`` and
    ``cuda:N`` pass through.

    Raises:
        ValueError: an unknown device (:func:`check_device`), or ``cuda`` asked for while no GPU
            is visible.
    """
    device = check_device(str(device))
    import torch  # imported here: the book runner and the profile table do not need torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use device='auto' or 'cpu'")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device
