"""Compute profiles: one name picks image size, epochs, batch, optimiser, seeds and data limits.

Every chapter takes a ``profile`` parameter; the book states which profile produced each chapter.

- ``smoke``: tiny images, one epoch, a handful of images per source. For tests and CI; its
  numbers mean nothing.
- ``cpu``: what a 2-core machine finishes in reasonable time (smaller images, fewer epochs, early
  stopping). The committed book is executed with it unless a GPU run replaced a chapter.
- ``paper``: the published settings of Tartaglione et al. 2020 as read from their code (Resize 256,
  CenterCrop 224, 100 epochs, batch 4, SGD lr 0.1 with weight decay 1e-3, ReduceLROnPlateau with
  patience 15, focal loss with gamma 2), for a GPU box.

Example:
    >>> from covid_lib.profiles import get_profile
    >>> p = get_profile("paper")
    >>> (p.resize_size, p.image_size, p.epochs, p.batch_size, p.lr, p.focal_gamma)
    (256, 224, 100, 4, 0.1, 2.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Profile:
    """A named set of compute settings; frozen so that it can be hashed into run ids.

    Attributes:
        name: the profile's name (a key of :data:`PROFILES`).
        description: one line saying what it is for.
        image_size: side of the square network input (after the centre crop), in pixels.
        resize_size: the shorter side images are resized to before the centre crop.
        epochs: maximum training epochs per stage (pre-training and fine-tuning).
        batch_size: images per optimisation step.
        optimizer: optimiser name ("sgd").
        lr: initial learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        lr_patience: epochs without validation improvement before ReduceLROnPlateau lowers the rate.
        early_stopping: stop after this many epochs without validation improvement (None: never).
        loss: training loss ("focal" or "ce").
        focal_gamma: focusing parameter of the focal loss.
        seeds: the random seeds each experiment is repeated with.
        max_images: cap on images per source (a stratified subset), or None for all.
        segmentation_size: input side of the lung-segmentation U-Net.
        segmentation_epochs: training epochs of the U-Net.
        num_workers: data-loader worker processes.
    """

    name: str
    description: str
    image_size: int
    resize_size: int
    epochs: int
    batch_size: int
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3
    lr_patience: int = 15
    early_stopping: int | None = None
    loss: str = "focal"
    focal_gamma: float = 2.0
    seeds: tuple[int, ...] = (0,)
    max_images: int | None = None
    segmentation_size: int = 256
    segmentation_epochs: int = 50
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.resize_size < self.image_size:
            raise ValueError(f"profile {self.name!r}: resize_size {self.resize_size} < image_size {self.image_size}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"profile {self.name!r}: epochs and batch_size must be >= 1")
        if not self.seeds:
            raise ValueError(f"profile {self.name!r}: at least one seed is needed")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"profile {self.name!r}: max_images must be None or >= 1")

    def to_dict(self) -> dict:
        """The settings as plain JSON-able values (tuples become lists)."""
        out = asdict(self)
        out["seeds"] = list(self.seeds)
        return out


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="smoke",
            description="tests and CI: tiny images, one epoch, 16 images per source; numbers mean nothing",
            image_size=64, resize_size=72, epochs=1, batch_size=8, lr=0.01, lr_patience=1,
            early_stopping=None, seeds=(0,), max_images=16, segmentation_size=64,
            segmentation_epochs=1,
        ),
        Profile(
            name="cpu",
            description="a 2-core machine in reasonable time: 128 px, few epochs, early stopping",
            image_size=128, resize_size=144, epochs=15, batch_size=16, lr=0.01, lr_patience=3,
            early_stopping=5, seeds=(0,), max_images=None, segmentation_size=128,
            segmentation_epochs=15,
        ),
        Profile(
            name="paper",
            description="the published settings (Resize 256, CenterCrop 224, 100 epochs, batch 4, "
            "SGD lr 0.1, focal loss gamma 2), for a GPU",
            image_size=224, resize_size=256, epochs=100, batch_size=4, lr=0.1, lr_patience=15,
            early_stopping=None, seeds=(0,), max_images=None, segmentation_size=256,
            segmentation_epochs=50, num_workers=4,
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


def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values pass through.

    Raises:
        ValueError: ``"cuda"`` was asked for but no GPU is visible.
    """
    import torch  # imported here: the book runner and the profile table do not need torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use device='auto' or 'cpu'")
    return str(device)
