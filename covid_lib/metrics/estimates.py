"""The estimates with intervals: Wilson, DeLong and log-DOR point estimates, the image and the
cluster (patient) bootstrap, and the public :func:`auc_estimate`, :func:`binary_metrics`,
:func:`macro_auc` and :func:`mean_estimate` (the interval rules are in :mod:`covid_lib.metrics`)."""

from __future__ import annotations

import math

import numpy as np

from covid_lib import stats
from covid_lib.metrics.thresholds import _counts
from covid_lib.metrics.types import (_NAN, METRICS, BinaryMetrics, ConfusionCounts, Estimate, _raw_dor,
                                     format_estimate)
from covid_lib.metrics.validation import _check_bootstrap_args, _validate


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
