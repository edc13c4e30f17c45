"""Where and how a model runs: device, threads, precision (bf16 autocast), memory format.

- **CPU**: ``torch.set_num_threads`` from the profile or the cores this process may use;
  bfloat16 autocast where the CPU has native bf16 (AVX-512 BF16 / AMX), channels-last tensors.
  Measured on the project's 2-core machine (``bench/bench_train.py``): see ``book/reproduce.md``.
- **CUDA**: bf16 autocast (AMP), channels-last, ``cudnn.benchmark`` unless determinism is asked
  for (then ``cudnn.deterministic``).
- ``precision="fp32"`` switches autocast off everywhere (the profile switch).

Example:
    >>> rt = Runtime.create("cpu", precision="fp32", threads=1)
    >>> (rt.device, rt.precision, rt.autocast_dtype)
    ('cpu', 'fp32', None)
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from covid_lib.profiles import resolve_device

PRECISIONS = ("fp32", "bf16")


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), so autocast pays off."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


@dataclass(frozen=True)
class Runtime:
    """The resolved execution settings of one training or inference job.

    Attributes:
        device: ``"cpu"`` or ``"cuda[:n]"``.
        precision: effective precision, ``"fp32"`` or ``"bf16"`` (bf16 asked for on a CPU
            without native bf16 falls back to fp32, and says so here).
        threads: CPU threads torch uses.
        channels_last: models and inputs in channels-last memory format.
        deterministic: cuDNN deterministic algorithms instead of benchmarked ones.
    """

    device: str
    precision: str
    threads: int
    channels_last: bool = True
    deterministic: bool = True

    @classmethod
    def create(cls, device: str = "auto", *, precision: str = "bf16", threads: int | None = None,
               channels_last: bool = True, deterministic: bool = True) -> "Runtime":
        """Resolve ``device``, apply the thread count and cuDNN flags, and pick the precision."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        device = resolve_device(device)
        threads = int(threads or available_cores())
        torch.set_num_threads(threads)
        if device.startswith("cuda"):
            torch.backends.cudnn.deterministic = deterministic
            torch.backends.cudnn.benchmark = not deterministic
        elif precision == "bf16" and not cpu_has_bf16():
            precision = "fp32"
        return cls(device=device, precision=precision, threads=threads, channels_last=channels_last,
                   deterministic=deterministic)

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    def autocast(self):
        """The autocast context of this precision (a no-op for fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move the model to the device (and to channels-last)."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs in the model's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def to_dict(self) -> dict:
        return {"device": self.device, "precision": self.precision, "threads": self.threads,
                "channels_last": self.channels_last, "deterministic": self.deterministic}
