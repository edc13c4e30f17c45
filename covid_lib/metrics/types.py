"""The metrics' result types: :class:`Estimate` (a value with its interval, printed by
:func:`format_estimate`), :class:`ConfusionCounts` and :class:`BinaryMetrics`, with the metric keys
(:data:`METRICS`) and the paper's headers (:data:`METRIC_LABELS`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Metric keys, in the column order of the paper's Tables II-IV.
METRICS: tuple[str, ...] = (
    "sensitivity", "specificity", "f_score", "accuracy", "balanced_accuracy", "auc", "dor",
)
#: Column headers the paper uses for each metric.
METRIC_LABELS: dict[str, str] = {
    "sensitivity": "Sensitivity", "specificity": "Specificity", "f_score": "F-Score",
    "accuracy": "Accuracy", "balanced_accuracy": "BA", "auc": "AUC", "dor": "DOR",
}
_NAN = float("nan")


def format_estimate(value: float, low: float = _NAN, high: float = _NAN, digits: int = 2) -> str:
    """``"0.91 [0.80, 0.96]"``; ``inf`` prints as ``"∞"``, NaN as ``"n/a"``, no NaN interval."""
    def num(x: float) -> str:
        if math.isnan(x):
            return "n/a"
        if math.isinf(x):
            return "∞" if x > 0 else "-∞"
        return f"{x:.{digits}f}"

    if math.isnan(low) or math.isnan(high):
        return num(value)
    return f"{num(value)} [{num(low)}, {num(high)}]"


@dataclass(frozen=True)
class Estimate:
    """A point value with its ``1 - alpha`` interval.

    Attributes
    ----------
    value, low, high
        Point estimate and interval bounds (NaN when undefined).
    method
        How the interval was computed, e.g. ``"Wilson"``, ``"DeLong, logit"``,
        ``"log, Haldane-Anscombe"``, ``"percentile bootstrap (patients)"``.
    note
        Why a value is NaN or was corrected; empty otherwise.
    """

    value: float
    low: float
    high: float
    method: str
    note: str = ""

    def format(self, digits: int = 2) -> str:
        """``"0.91 [0.80, 0.96]"`` (see :func:`format_estimate`)."""
        return format_estimate(self.value, self.low, self.high, digits)

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict[str, float | str]:
        """``{"value", "low", "high", "method", "note"}``."""
        return {"value": self.value, "low": self.low, "high": self.high,
                "method": self.method, "note": self.note}


@dataclass(frozen=True)
class ConfusionCounts:
    """The 2x2 confusion table at one threshold (COVID+ = positive)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n_pos(self) -> int:
        """Number of COVID+ images (tp + fn)."""
        return self.tp + self.fn

    @property
    def n_neg(self) -> int:
        """Number of COVID- images (tn + fp)."""
        return self.tn + self.fp

    @property
    def n(self) -> int:
        """Number of images."""
        return self.tp + self.fp + self.fn + self.tn

    def to_dict(self) -> dict[str, int]:
        """``{"tp", "fp", "fn", "tn", "n_pos", "n_neg"}``."""
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "n_pos": self.n_pos, "n_neg": self.n_neg}


@dataclass(frozen=True)
class BinaryMetrics:
    """Every metric of :func:`binary_metrics` with its interval, plus the counts behind them.

    Index a metric by attribute (``m.auc``) or key (``m["auc"]``); keys are :data:`METRICS`.
    """

    threshold: float
    counts: ConfusionCounts
    sensitivity: Estimate
    specificity: Estimate
    f_score: Estimate
    accuracy: Estimate
    balanced_accuracy: Estimate
    auc: Estimate
    dor: Estimate
    alpha: float = 0.05
    n_boot: int = 2000
    seed: int = 0
    bootstrap_unit: str = "image"

    def __getitem__(self, metric: str) -> Estimate:
        if metric not in METRICS:
            raise KeyError(f"unknown metric {metric!r}; expected one of {METRICS}")
        return getattr(self, metric)

    @property
    def tp(self) -> int:
        return self.counts.tp

    @property
    def fp(self) -> int:
        return self.counts.fp

    @property
    def fn(self) -> int:
        return self.counts.fn

    @property
    def tn(self) -> int:
        return self.counts.tn

    @property
    def n_pos(self) -> int:
        return self.counts.n_pos

    @property
    def n_neg(self) -> int:
        return self.counts.n_neg

    @property
    def dor_raw(self) -> float:
        """Uncorrected ``tp tn / (fp fn)``: ``inf`` with a zero off-diagonal cell, as in the paper."""
        return _raw_dor(self.counts)

    def estimates(self) -> dict[str, Estimate]:
        """``{metric: Estimate}`` in :data:`METRICS` order."""
        return {m: getattr(self, m) for m in METRICS}

    def to_frame(self) -> pd.DataFrame:
        """Tidy frame, one row per metric: ``metric, value, low, high, method, note``."""
        rows = [{"metric": m, **e.to_dict()} for m, e in self.estimates().items()]
        return pd.DataFrame(rows, columns=["metric", "value", "low", "high", "method", "note"])

    def to_dict(self) -> dict[str, float | int | str]:
        """Flat dict (one row of a results table): threshold, counts, then for every metric
        ``<metric>``, ``<metric>_low``, ``<metric>_high``, ``<metric>_method``; then alpha,
        n_boot, seed and bootstrap_unit."""
        out: dict[str, float | int | str] = {"threshold": self.threshold, **self.counts.to_dict()}
        for m, e in self.estimates().items():
            out.update({m: e.value, f"{m}_low": e.low, f"{m}_high": e.high,
                        f"{m}_method": e.method})
        out.update({"alpha": self.alpha, "n_boot": self.n_boot, "seed": self.seed,
                    "bootstrap_unit": self.bootstrap_unit})
        return out

    def formatted(self, digits: int = 2, *, labels: bool = False) -> dict[str, str]:
        """``{metric: "0.91 [0.80, 0.96]"}``; ``labels=True`` keys by the paper's headers."""
        return {(METRIC_LABELS[m] if labels else m): e.format(digits)
                for m, e in self.estimates().items()}

    def __str__(self) -> str:
        c = self.counts
        head = (f"threshold={self.threshold:g}  tp={c.tp} fp={c.fp} fn={c.fn} tn={c.tn}  "
                f"({100 * (1 - self.alpha):g}% intervals)")
        body = [f"  {METRIC_LABELS[m]:<12} {e.format()}  ({e.method})"
                for m, e in self.estimates().items()]
        return "\n".join([head, *body])


def _raw_dor(c: ConfusionCounts) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(c.tp * c.tn) / np.float64(c.fp * c.fn))
