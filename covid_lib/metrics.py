"""Binary classification metrics with confidence intervals (COVID+ = positive class).

The paper (Tartaglione et al. 2020, Sec. IV) evaluates every trained model with accuracy, AUC,
sensitivity, specificity, F-score, balanced accuracy (BA) and the diagnostic odds ratio (DOR),
"for every other metric [than AUC], the classification threshold is set to 0.5". It reports
point values only; here each metric comes with a ``1 - alpha`` interval and the confusion
counts behind it:

=====================  =====================================================================
metric                 interval (independent images: no ``groups``, or one image per group)
=====================  =====================================================================
sensitivity            Wilson (1927) score interval on tp / (tp + fn)
specificity            Wilson on tn / (tn + fp)
accuracy               Wilson on (tp + tn) / n
AUC                    DeLong et al. (1988), fast midrank algorithm of Sun & Xu (2014), on the
                       logit scale (see :func:`covid_lib.stats.delong_auc`)
DOR                    (tp tn) / (fp fn), log-scale (Woolf) interval; when any cell is 0 the
                       Haldane (1940) / Anscombe (1956) correction adds 0.5 to every cell and
                       the estimate says so (the paper prints "inf" there)
balanced accuracy      percentile bootstrap over images
F-score (F1, COVID+)   percentile bootstrap over images
=====================  =====================================================================

When ``groups`` (patient ids) repeat - a patient with several images, as in the COVID
collection (about 1.8 images per patient) - the images are not independent and the formulas
above would be too narrow. Then *every* metric's interval comes from one cluster bootstrap
(:func:`covid_lib.stats.bootstrap_replicates`) that resamples patients with all their images;
each estimate's ``method`` says which interval it carries, e.g. ``"Wilson"``,
``"DeLong, logit"`` or ``"cluster bootstrap (n_boot=2000, 311 groups)"``.

Threshold rule: an image is predicted COVID+ when ``y_score >= threshold``. The default 0.5 is
the paper's; a tuned threshold must be chosen on *validation* data with
:func:`choose_threshold` and then passed as ``threshold=`` when scoring the test set.

Example
-------
>>> t = choose_threshold(y_val, p_val, criterion="youden")        # doctest: +SKIP
>>> m = binary_metrics(y_test, p_test, threshold=t, groups=patient_ids)  # doctest: +SKIP
>>> m.sensitivity.format()                                         # doctest: +SKIP
'0.91 [0.80, 0.96]'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from covid_lib import stats
from covid_lib.stats import DeLongTest, delong_test  # the one paired DeLong test, re-exported

__all__ = [
    "METRICS", "METRIC_LABELS", "Estimate", "ConfusionCounts", "BinaryMetrics", "DeLongTest",
    "auc_estimate", "binary_metrics", "confusion_counts", "choose_threshold", "delong_test", "format_estimate",
    "collapse_status",
]

#: Metric keys, in the column order of the paper's Tables II-IV.
METRICS: tuple[str, ...] = (
    "sensitivity", "specificity", "f_score", "accuracy", "balanced_accuracy", "auc", "dor",
)
#: Column headers the paper uses for each metric.
METRIC_LABELS: dict[str, str] = {
    "sensitivity": "Sensitivity", "specificity": "Specificity", "f_score": "F-Score",
    "accuracy": "Accuracy", "balanced_accuracy": "BA", "auc": "AUC", "dor": "DOR",
}
THRESHOLD_CRITERIA: tuple[str, ...] = ("youden", "balanced_accuracy", "f1", "closest_topleft")
_NAN = float("nan")


# --------------------------------------------------------------------------- result types


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


# --------------------------------------------------------------------------- validation


def _as_1d(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _validate_labels(y_true) -> np.ndarray:
    y = _as_1d(y_true, "y_true")
    if y.dtype == bool:
        return y
    if not (np.issubdtype(y.dtype, np.number)):
        raise ValueError(f"y_true must be 0/1 or boolean, got dtype {y.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        found = np.unique(y[bad])[:5].tolist()
        raise ValueError(f"y_true must contain only 0 and 1 (1 = COVID+); found {int(bad.sum())} "
                         f"other values, e.g. {found}")
    return y.astype(bool)


def _validate_scores(y_score, name: str = "y_score") -> np.ndarray:
    s = _as_1d(y_score, name)
    if s.dtype == bool:
        s = s.astype(float)
    if not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    s = s.astype(float)
    n_nan, n_inf = int(np.isnan(s).sum()), int(np.isinf(s).sum())
    if n_nan or n_inf:
        raise ValueError(f"{name} contains {n_nan} NaN and {n_inf} infinite values "
                         f"(of {s.size}); drop or fix those images before scoring")
    return s


def _validate(y_true, y_score, threshold: float | None = None,
              name: str = "y_score") -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(y bool, scores float)``; see :func:`binary_metrics` for the rules."""
    y, s = _validate_labels(y_true), _validate_scores(y_score, name)
    if y.size != s.size:
        raise ValueError(f"y_true and {name} have different lengths: {y.size} != {s.size}")
    if threshold is not None:
        _check_threshold(threshold, s)
    return y, s


def _check_threshold(threshold: float, s: np.ndarray) -> None:
    if not isinstance(threshold, (int, float, np.number)) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    outside = int(((s < 0.0) | (s > 1.0)).sum())
    if outside and threshold == 0.5:
        raise ValueError(
            f"{outside} scores lie outside [0, 1] (min {s.min():.3g}, max {s.max():.3g}), so "
            "threshold 0.5 (meant for probabilities) is meaningless: pass probabilities, or a "
            "threshold on the score's own scale (e.g. 0.0 for logits, or choose_threshold)")


def _check_bootstrap_args(n_boot: int, alpha: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    stats.z_critical(alpha)  # validates alpha


# --------------------------------------------------------------------------- counts & threshold


def _counts(y: np.ndarray, pred: np.ndarray) -> ConfusionCounts:
    return ConfusionCounts(tp=int((y & pred).sum()), fp=int((~y & pred).sum()),
                           fn=int((y & ~pred).sum()), tn=int((~y & ~pred).sum()))


def confusion_counts(y_true, y_score, *, threshold: float = 0.5) -> ConfusionCounts:
    """Confusion counts with ``y_score >= threshold`` predicted COVID+ (validated inputs)."""
    y, s = _validate(y_true, y_score, threshold)
    return _counts(y, s >= threshold)


def _criterion_values(tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int,
                      criterion: str) -> np.ndarray:
    sens, spec = tp / n_pos, 1.0 - fp / n_neg
    if criterion in ("youden", "balanced_accuracy"):
        return sens + spec - 1.0  # same argmax as (sens + spec) / 2
    if criterion == "f1":
        return 2.0 * tp / (tp + fp + n_pos)  # 2tp / (2tp + fp + fn), fn = n_pos - tp
    return -((1.0 - sens) ** 2 + (1.0 - spec) ** 2)  # closest_topleft


def choose_threshold(y_true_val, y_score_val, *, criterion: str = "youden") -> float:
    """Threshold maximising ``criterion`` on *validation* data (never on the test set).

    Candidates are the midpoints between consecutive distinct validation scores (so the same
    split of the validation images is obtained, robustly to scores slightly off on the test
    set), plus the lowest score (everything COVID+). Ties between equally good thresholds go to
    the one closest to 0.5, the paper's default.

    Parameters
    ----------
    y_true_val, y_score_val
        Validation labels (both classes present) and scores.
    criterion
        ``"youden"`` (sensitivity + specificity - 1) or its equivalent ``"balanced_accuracy"``;
        ``"f1"`` (F-score of COVID+); ``"closest_topleft"`` (ROC point nearest (0, 1)).

    Returns
    -------
    float
        Pass it as ``threshold=`` to :func:`binary_metrics` on the test set.
    """
    if criterion not in THRESHOLD_CRITERIA:
        raise ValueError(f"criterion must be one of {THRESHOLD_CRITERIA}, got {criterion!r}")
    y, s = _validate(y_true_val, y_score_val)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("choose_threshold needs both classes in the validation labels")
    order = np.argsort(-s, kind="mergesort")
    s_desc, y_desc = s[order], y[order]
    last_of_run = np.r_[s_desc[1:] != s_desc[:-1], True]
    tp, fp = np.cumsum(y_desc)[last_of_run], np.cumsum(~y_desc)[last_of_run]
    value = _criterion_values(tp, fp, n_pos, n_neg, criterion)
    upper = s_desc[last_of_run]
    lower = np.r_[upper[1:], -np.inf]
    mid = (upper + lower) / 2.0
    cand = np.where((mid > lower) & (mid < upper), mid, upper)
    best = np.flatnonzero(value >= value.max() - 1e-12)
    return float(cand[best[np.argmin(np.abs(cand[best] - 0.5))]])


# --------------------------------------------------------------------------- estimates


def _wilson_estimate(successes: int, n: int, alpha: float, undefined: str) -> Estimate:
    if n == 0:
        return Estimate(_NAN, _NAN, _NAN, "Wilson", undefined)
    low, high = stats.wilson_interval(successes, n, alpha)
    return Estimate(successes / n, low, high, "Wilson")


def _auc_estimate(y: np.ndarray, s: np.ndarray, alpha: float) -> Estimate:
    if y.all() or not y.any():
        return Estimate(_NAN, _NAN, _NAN, "DeLong, logit",
                        "AUC undefined: only one class present")
    r = stats.delong_auc(y, s, alpha=alpha, transform="logit")
    note = "" if not math.isnan(r.low) else "one image in a class: DeLong variance not estimable"
    return Estimate(r.auc, r.low, r.high, "DeLong, logit", note)


def _raw_dor(c: ConfusionCounts) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(c.tp * c.tn) / np.float64(c.fp * c.fn))


def _dor_estimate(c: ConfusionCounts, alpha: float) -> Estimate:
    if c.n_pos == 0 or c.n_neg == 0:
        return Estimate(_NAN, _NAN, _NAN, "log", "DOR undefined: only one class present")
    r = stats.log_odds_ratio_interval(c.tp, c.fn, c.fp, c.tn, alpha)
    if not r.corrected:
        return Estimate(r.value, r.low, r.high, "log")
    raw = format_estimate(_raw_dor(c))
    return Estimate(r.value, r.low, r.high, "log, Haldane-Anscombe",
                    f"zero cell: 0.5 added to every cell (uncorrected DOR = {raw})")


def _count_metrics(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every count-based metric from ``(..., 4)`` counts (tp, fp, fn, tn); NaN where undefined.

    The DOR adds 0.5 to every cell of a table with a zero cell (Haldane-Anscombe), as
    :func:`_dor_estimate` does for the point value; it is NaN when a class is missing.
    """
    tp, fp, fn, tn = (counts[..., i].astype(float) for i in range(4))
    zero = (counts == 0).any(axis=-1)
    a, b, c, d = (x + 0.5 * zero for x in (tp, fn, fp, tn))
    with np.errstate(divide="ignore", invalid="ignore"):
        sens, spec = tp / (tp + fn), tn / (tn + fp)
        return {"sensitivity": sens, "specificity": spec,
                "f_score": 2.0 * tp / (2.0 * tp + fp + fn),
                "accuracy": (tp + tn) / (tp + fp + fn + tn),
                "balanced_accuracy": (sens + spec) / 2.0,
                "dor": np.where((tp + fn > 0) & (tn + fp > 0), a * d / (b * c), np.nan)}


_UNDEFINED = {"balanced_accuracy": "BA undefined: only one class present",
              "f_score": "F-score undefined: no COVID+ images and none predicted"}


def _dropped_note(n_ok: int, n_boot: int) -> str:
    return "" if n_ok == n_boot else (
        f"{n_boot - n_ok} of {n_boot} resamples undefined (a class missing), dropped")


def _image_bootstrap_estimates(y: np.ndarray, pred: np.ndarray, n_boot: int, seed: int,
                               alpha: float) -> dict[str, Estimate]:
    """BA and F-score with a percentile bootstrap over images (independent images)."""
    cells = stats.cell_indicators(y, pred)
    point = _count_metrics(cells.sum(axis=0))
    keys = ("balanced_accuracy", "f_score")
    method = f"percentile bootstrap (n_boot={n_boot}, {y.size} images)" if n_boot else "none"
    if n_boot:
        reps = stats.bootstrap_replicates(
            lambda w: np.column_stack([_count_metrics(w @ cells)[k] for k in keys]), y.size,
            n_boot=n_boot, seed=seed)
    out = {}
    for j, m in enumerate(keys):
        value = float(point[m])
        if math.isnan(value):
            out[m] = Estimate(_NAN, _NAN, _NAN, method, _UNDEFINED[m])
        elif not n_boot:
            out[m] = Estimate(value, _NAN, _NAN, method)
        else:
            low, high, n_ok = stats.percentile_interval(reps[:, j], alpha)
            out[m] = Estimate(value, low, high, method, _dropped_note(n_ok, n_boot))
    return out


def _clustered(codes: np.ndarray | None, n: int) -> bool:
    """The interval rule of :func:`binary_metrics`: True when some group holds several images."""
    return codes is not None and int(codes.max()) + 1 < n


def _cluster_method(codes: np.ndarray, n_boot: int) -> str:
    return f"cluster bootstrap (n_boot={n_boot}, {int(codes.max()) + 1} groups)" if n_boot else "none"


def _from_replicates(e: Estimate, reps: np.ndarray | None, method: str, n_boot: int, alpha: float,
                     keep_note: bool) -> Estimate:
    """``e``'s point value with the percentile interval of its cluster-bootstrap replicates ``reps``."""
    keep = e.note if (math.isnan(e.value) or keep_note) else ""
    if math.isnan(e.value):
        return Estimate(_NAN, _NAN, _NAN, method, keep)
    if not n_boot:
        return Estimate(e.value, _NAN, _NAN, method,
                        "; ".join(filter(None, [keep, "images cluster in groups: intervals need n_boot > 0"])))
    low, high, n_ok = stats.percentile_interval(reps, alpha)
    return Estimate(e.value, low, high, method, "; ".join(filter(None, [keep, _dropped_note(n_ok, n_boot)])))


def _cluster_bootstrap_estimates(y: np.ndarray, pred: np.ndarray, codes: np.ndarray,
                                 point: dict[str, Estimate], n_boot: int, seed: int,
                                 alpha: float) -> dict[str, Estimate]:
    """Every count metric's interval from one cluster bootstrap (whole groups resampled).

    ``point`` holds the point values (and their notes: undefined, Haldane-Anscombe); the
    interval of each metric is the percentile interval of its replicates, computed from the
    same resamples (the confusion counts of each). The AUC's is :func:`auc_estimate`'s, from the
    same resamples (:func:`covid_lib.stats.bootstrap_replicates` draws them from ``seed`` and the
    groups alone).
    """
    method = _cluster_method(codes, n_boot)
    cells = stats.cell_indicators(y, pred)
    keys = [m for m in METRICS if m != "auc"]

    def statistic(w: np.ndarray) -> np.ndarray:
        by_count = _count_metrics(w @ cells)
        return np.column_stack([by_count[m] for m in keys])

    reps = stats.bootstrap_replicates(statistic, y.size, groups=codes, n_boot=n_boot,
                                      seed=seed) if n_boot else None
    return {m: _from_replicates(point[m], None if reps is None else reps[:, j], method, n_boot, alpha,
                                keep_note=m == "dor") for j, m in enumerate(keys)}


def auc_estimate(y_true, y_score, *, groups=None, n_boot: int = 2000, seed: int = 0,
                 alpha: float = 0.05) -> Estimate:
    """The AUC (ties count half) with :func:`binary_metrics`' interval, by its rule: a cluster
    bootstrap that resamples whole patients when some patient (``groups``) has several images,
    else DeLong's interval on the logit scale (independent images). The one home of the AUC and
    its interval: :func:`binary_metrics` takes its AUC from here, and so do the metadata-only
    baseline (:mod:`covid_lib.analysis.metadata_baseline`, chapter 03) and every AUC of the audit
    (:mod:`covid_lib.audit.measures`, :mod:`covid_lib.audit.model`), which report the numbers the
    chapters report. With one class present the AUC and its interval are NaN (``note`` says why).

    Example:
        >>> auc_estimate([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]).format()
        '0.75 [0.07, 0.99]'
    """
    y, s = _validate(y_true, y_score)
    _check_bootstrap_args(n_boot, alpha)
    codes = None if groups is None else stats.group_codes(groups, y.size)
    point = _auc_estimate(y, s, alpha)
    if not _clustered(codes, y.size):
        return point
    reps = stats.bootstrap_replicates(lambda w: stats.weighted_auc(y, s, w), y.size, groups=codes,
                                      n_boot=n_boot, seed=seed) if n_boot else None
    return _from_replicates(point, reps, _cluster_method(codes, n_boot), n_boot, alpha, keep_note=False)


def binary_metrics(y_true, y_score, *, threshold: float = 0.5, groups=None, n_boot: int = 2000,
                   seed: int = 0, alpha: float = 0.05) -> BinaryMetrics:
    """All the paper's metrics with ``1 - alpha`` intervals and the counts behind them.

    Parameters
    ----------
    y_true
        Labels, 1 (or True) = COVID+, 0 = COVID-. Any other value is an error.
    y_score
        Scores, higher = more likely COVID+; an image is predicted COVID+ when
        ``y_score >= threshold``. NaN or infinite scores are an error (the message counts them).
        Scores outside [0, 1] (logits, margins) are allowed with an explicit threshold on their
        scale; with ``threshold=0.5`` (the probability default) they raise ``ValueError``.
        AUC uses the scores themselves (ties get half credit); the other metrics the
        thresholded predictions. Hard 0/1 predictions work too.
    threshold
        Decision threshold: 0.5 as in the paper, or one chosen on validation data with
        :func:`choose_threshold`.
    groups
        Optional patient ids, one per image. When some patient has several images, images are
        not independent, and *every* interval (sensitivity, specificity, accuracy, AUC, DOR, BA,
        F-score) comes from one cluster bootstrap that resamples patients with all their images
        (method ``"cluster bootstrap (n_boot=..., G groups)"``). Without groups, or with one
        image per group, the analytic intervals are used (Wilson, DeLong, log-DOR), and BA and
        F-score are bootstrapped over images.
    n_boot
        Bootstrap resamples (0 skips the bootstrap: NaN bootstrap intervals).
    seed
        Bootstrap seed; results are deterministic.
    alpha
        One minus the coverage (0.05: 95% intervals).

    Returns
    -------
    BinaryMetrics
        With a class missing, AUC, DOR, balanced accuracy and that class's rate are NaN with a
        note (not an error). With a zero cell the DOR is Haldane-Anscombe corrected and flagged
        (``note``; ``method="log, Haldane-Anscombe"`` for the analytic interval;
        ``dor_raw`` keeps the uncorrected, possibly infinite, value).
    """
    y, s = _validate(y_true, y_score, threshold)
    _check_bootstrap_args(n_boot, alpha)
    codes = None if groups is None else stats.group_codes(groups, y.size)
    clustered = _clustered(codes, y.size)
    pred = s >= threshold
    c = _counts(y, pred)
    est = {
        "sensitivity": _wilson_estimate(c.tp, c.n_pos, alpha, "undefined: no COVID+ images"),
        "specificity": _wilson_estimate(c.tn, c.n_neg, alpha, "undefined: no COVID- images"),
        "accuracy": _wilson_estimate(c.tp + c.tn, c.n, alpha, ""),
        "dor": _dor_estimate(c, alpha),
        **_image_bootstrap_estimates(y, pred, 0 if clustered else n_boot, seed, alpha),
    }
    if clustered:
        est = _cluster_bootstrap_estimates(y, pred, codes, est, n_boot, seed, alpha)
    est["auc"] = auc_estimate(y, s, groups=codes, n_boot=n_boot, seed=seed, alpha=alpha)
    return BinaryMetrics(threshold=float(threshold), counts=c, alpha=alpha, n_boot=int(n_boot),
                         seed=seed, bootstrap_unit="image" if groups is None else "patient",
                         **est)


def macro_auc(y_true, probs, *, groups=None, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    """One-vs-rest macro AUC of a K-class classifier (K = 2: the AUC of class 1) with a bootstrap
    interval; whole patient groups are resampled when ``groups`` is given (pre-training records,
    Sec. III-C: ChestXRay's three classes, RSNA's two).

    Example:
        >>> import numpy as np
        >>> y = np.array([0, 1, 2, 0, 1, 2]); p = np.eye(3)[y] * 0.8 + 0.1
        >>> macro_auc(y, p, n_boot=200).value
        1.0
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probs must be (N, K) with N = {len(y)}, got {p.shape}")
    classes = [1] if p.shape[1] == 2 else list(range(p.shape[1]))
    if any((y == k).all() or not (y == k).any() for k in classes):
        return Estimate(_NAN, _NAN, _NAN, "none", "AUC undefined: a class is absent")

    def statistic(w: np.ndarray) -> np.ndarray:
        return np.mean([stats.weighted_auc(y == k, p[:, k], w) for k in classes], axis=0)

    value = float(statistic(np.ones((1, len(y))))[0])
    low, high = stats.bootstrap_ci(y, statistic, groups=groups, n_boot=n_boot, level=1 - alpha, seed=seed)
    unit = f"{len(set(map(str, groups)))} groups" if groups is not None else f"{len(y)} images"
    kind = "cluster bootstrap" if groups is not None and len(set(map(str, groups))) < len(y) else "percentile bootstrap"
    return Estimate(value, low, high, f"{kind} (n_boot={n_boot}, {unit})")


def mean_estimate(values, *, groups=None, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Estimate:
    """A mean (e.g. accuracy as the mean of correct-answer indicators) with a bootstrap interval
    that resamples whole patient groups when ``groups`` is given.

    Example:
        >>> mean_estimate([1, 1, 0, 1], n_boot=100).value
        0.75
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return Estimate(_NAN, _NAN, _NAN, "none", "no values")
    low, high = stats.bootstrap_ci(v, groups=groups, n_boot=n_boot, level=1 - alpha, seed=seed)
    n_units = len(set(map(str, groups))) if groups is not None else len(v)
    kind = "cluster bootstrap" if n_units < len(v) else "percentile bootstrap"
    unit = f"{n_units} groups" if groups is not None else f"{n_units} images"
    return Estimate(float(v.mean()), low, high, f"{kind} (n_boot={n_boot}, {unit})")


#: A model's scores collapse (:func:`collapse_status`) when all fall on one side of this threshold
#: or their 5-95% range is under :data:`COLLAPSE_MIN_SPREAD` (issue 16; :mod:`covid_lib.analysis.protocol`).
COLLAPSE_THRESHOLD = 0.5
COLLAPSE_MIN_SPREAD = 1e-3


def score_spread(y_score) -> float:
    """The 5-95% inter-quantile range of a model's scores (``numpy.quantile``, linear interpolation):
    the spread :func:`collapse_status` compares with its ``min_spread``."""
    low, high = np.quantile(_validate_scores(y_score), [0.05, 0.95])
    return float(high - low)


def collapse_status(y_score, *, threshold: float | None = COLLAPSE_THRESHOLD,
                    min_spread: float = COLLAPSE_MIN_SPREAD) -> str | None:
    """Why a model's scores (on its own test set) cannot be read as a trained model's, or None.

    A model has *collapsed* when its scores say nothing about the image: all on one side of its
    threshold (every image gets the same prediction, so sensitivity and specificity measure where
    the scores sit, not the model), or spread so little that ranks are decided by noise (two
    Conv8s of the grid output 0.45713-0.45734 for every image). The spread is the 5-95%
    inter-quantile range (``numpy.quantile``, linear interpolation): robust to a few outlying
    images, unlike the full range, and, unlike the interquartile range, not fooled by a confident
    model whose majority class is scored almost identically (e.g. 80% of negatives at 0.001).

    Args:
        y_score: the model's scores (finite), e.g. on its own test set.
        threshold: its decision threshold; an image is COVID+ when ``score >= threshold``. None:
            read the spread only (the collapse sensitivity reading, :mod:`covid_lib.report.sensitivity`).
        min_spread: the smallest 5-95% range of a usable model, on the scores' scale.

    Returns:
        None when the scores are usable; otherwise the reasons joined by ``"; "``: ``"all scores
        at or above the threshold 0.5"``, ``"all scores below the threshold 0.5"``, ``"score
        spread 2.1e-04 < 1e-03 (5-95% range)"``.

    Example:
        >>> collapse_status([0.45713, 0.45720, 0.45734])
        'all scores below the threshold 0.5; score spread 1.9e-04 < 1e-03 (5-95% range)'
        >>> collapse_status([0.1, 0.4, 0.6, 0.9]) is None
        True
        >>> collapse_status([0.6, 0.7, 0.9], threshold=None) is None   # one side of 0.5, but spread
        True
    """
    s = _validate_scores(y_score)
    if (threshold is not None and not math.isfinite(threshold)) or not min_spread >= 0:
        raise ValueError(f"need a finite threshold (or None) and min_spread >= 0, got {threshold!r}, {min_spread!r}")
    reasons = []
    if threshold is not None and (s >= threshold).all():
        reasons.append(f"all scores at or above the threshold {threshold:g}")
    elif threshold is not None and (s < threshold).all():
        reasons.append(f"all scores below the threshold {threshold:g}")
    spread = score_spread(s)
    if spread < min_spread:
        reasons.append(f"score spread {spread:.1e} < {min_spread:.0e} (5-95% range)")
    return "; ".join(reasons) or None
