"""How long the missing runs of a grid will take, estimated from the recorded ones (``grid compute``).

A run's time is its work (images it pushes through the network, epochs and evaluation included)
divided by its speed (images a second). Both are read from the records' ``timings.json``:

- **work** (``total_s x train_images_per_s``): the median over recorded runs of the same task and
  composition (any architecture: the data set and early stopping set it);
- **speed** (``train_images_per_s``): the median over recorded runs of the same architecture and
  input size; with none at that size, that architecture's at another size scaled by the pixel
  count, ``(recorded size / size)^2``, and the estimate is marked *extrapolated*.

An estimate, not a measurement: records made beside other work (tests, chapters) are slower, and
early stopping varies with the seed. Nothing is estimated for a run whose composition or
architecture has no record at all.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable

from covid_lib.runs import RunSpec


@dataclass(frozen=True)
class Remaining:
    """Estimated hours of some missing runs: ``hours`` over the ``n_estimated`` of ``n_missing``
    that have a basis; ``extrapolated`` of those have a speed scaled from another input size."""

    hours: float
    n_missing: int
    n_estimated: int
    extrapolated: int


class CostModel:
    """Work per (task, composition) and speed per (arch, input size), from recorded runs' timings."""

    def __init__(self, recorded: Iterable[tuple[RunSpec, dict]]) -> None:
        work: dict[tuple, list[float]] = {}
        speed: dict[tuple, list[float]] = {}
        for spec, t in recorded:
            ips, total = t.get("train_images_per_s"), t.get("total_s")
            if not ips or not total:
                continue
            work.setdefault((spec.task, spec.composition), []).append(total * ips)
            speed.setdefault((spec.arch, spec.input_size), []).append(ips)
        self.work = {k: statistics.median(v) for k, v in work.items()}
        self.speed = {k: statistics.median(v) for k, v in speed.items()}

    def seconds(self, spec: RunSpec) -> tuple[float, bool] | None:
        """Estimated seconds of ``spec`` and whether its speed was extrapolated; None without a basis."""
        work = self.work.get((spec.task, spec.composition))
        if work is None:
            return None
        speed = self.speed.get((spec.arch, spec.input_size))
        if speed is not None:
            return work / speed, False
        others = sorted((size, v) for (arch, size), v in self.speed.items() if arch == spec.arch)
        if not others:
            return None
        size, v = min(others, key=lambda sv: abs(sv[0] - spec.input_size))
        return work / (v * (size / spec.input_size) ** 2), True

    def remaining(self, missing: Iterable[RunSpec]) -> Remaining:
        """:class:`Remaining` of the ``missing`` runs (each run id once)."""
        unique = list({s.run_id: s for s in missing}.values())
        costs = [c for c in (self.seconds(s) for s in unique) if c is not None]
        return Remaining(hours=sum(s for s, _ in costs) / 3600, n_missing=len(unique), n_estimated=len(costs),
                         extrapolated=sum(x for _, x in costs))
