"""The small-test-set trap (Tartaglione et al. 2020, Sec. IV-E, Table IV): what a "perfect" score on
the 15-image COVID-ChestXRay test (10 COVID+, 5 COVID-) can and cannot tell.

Three pieces, all on plain arrays and score tables:

- *How wide is perfect?* :func:`perfect_score_table`: Wilson and exact (Clopper-Pearson) intervals of
  10/10 and 5/5, the DeLong and bootstrap intervals of AUC 1.0 (both collapse to [1, 1]: zero
  variance, a false certainty), and the smallest true value that still gives a perfect score with
  probability ``alpha`` (one-sided exact bound; for the AUC under an equal-variance binormal model,
  :func:`perfect_auc_bound`; for balanced accuracy :func:`perfect_ba_bound`).
- *Redraws.* :func:`draw_tests` redraws the 15-image test from the test patients (one image per
  patient group while groups last, seeded); :func:`redraw_metrics` scores each draw;
  :func:`redraw_summary` gives the spread beside the fixed test and the paper.

Table IV from run records, the redraws of a trained model and the verdict of claim C5 are in
:mod:`covid_lib.report.small_test_set`.

Example:
    >>> round(smallest_rate(5), 3), round(exact_interval(5, 5)[0], 3)
    (0.549, 0.478)
    >>> round(chance_of_perfect(0.9, 0.8), 3)
    0.114
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import integrate, optimize
from scipy.stats import beta, norm

from covid_lib import stats
from covid_lib.data.compose import SNAPSHOT_TEST
from covid_lib.metrics import Estimate, binary_metrics

N_POS, N_NEG = SNAPSHOT_TEST[1], SNAPSHOT_TEST[0]
REDRAW_METRICS = ("auc", "balanced_accuracy", "sensitivity", "specificity", "accuracy")


# ---------------------------------------------------------------------------------- interval maths
def exact_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson (exact) two-sided interval of ``k / n``."""
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def smallest_rate(n: int, alpha: float = 0.05) -> float:
    """The smallest true rate ``p`` with ``P(n/n correct) = p**n >= alpha`` (one-sided exact bound)."""
    return float(alpha ** (1.0 / n))


def chance_of_perfect(sensitivity: float, specificity: float, n_pos: int = N_POS, n_neg: int = N_NEG) -> float:
    """Probability that a model with these true rates scores ``n_pos``/``n_pos`` and ``n_neg``/``n_neg``."""
    return float(sensitivity ** n_pos * specificity ** n_neg)


def p_perfect_separation(d: float, n_pos: int = N_POS, n_neg: int = N_NEG) -> float:
    """P(every positive scores above every negative) when negatives ~ N(0, 1), positives ~ N(d, 1)
    (true AUC = Phi(d / sqrt 2)): the chance of an observed AUC of exactly 1."""
    def f(x: float) -> float:  # the largest negative is at x, every positive above it
        return n_neg * norm.pdf(x) * norm.cdf(x) ** (n_neg - 1) * norm.sf(x - d) ** n_pos
    return float(integrate.quad(f, -12.0, 12.0 + d, limit=200)[0])


def perfect_auc_bound(n_pos: int = N_POS, n_neg: int = N_NEG, alpha: float = 0.05) -> float:
    """The smallest true AUC (equal-variance binormal scores) that yields an observed AUC of 1 with
    probability ``alpha``: a one-sided lower bound for an observed perfect AUC."""
    d = optimize.brentq(lambda x: p_perfect_separation(x, n_pos, n_neg) - alpha, -5.0, 15.0)
    return float(norm.cdf(d / math.sqrt(2)))


def perfect_ba_bound(n_pos: int = N_POS, n_neg: int = N_NEG, alpha: float = 0.05) -> float:
    """The smallest true balanced accuracy with ``P(all n_pos + n_neg correct) >= alpha``
    (independent images): min (se + sp) / 2 subject to se**n_pos * sp**n_neg = alpha."""
    lo = alpha ** (1.0 / n_neg)

    def ba(sp: float) -> float:
        return ((alpha / sp ** n_neg) ** (1.0 / n_pos) + sp) / 2

    res = optimize.minimize_scalar(ba, bounds=(lo, 1.0), method="bounded", options={"xatol": 1e-9})
    return float(min(res.fun, ba(lo), ba(1.0)))


def perfect_score_table(n_pos: int = N_POS, n_neg: int = N_NEG, *, alpha: float = 0.05,
                        n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Every interval a perfect score on ``n_pos`` COVID+ and ``n_neg`` COVID- images allows.

    Returns one row per metric and method: ``metric, observed, method, low, high, note``.
    """
    y = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    s = y.astype(float)
    level = f"{100 * (1 - alpha):g}%"
    rows = []
    for metric, k, n in (("sensitivity", n_pos, n_pos), ("specificity", n_neg, n_neg),
                         ("accuracy", n_pos + n_neg, n_pos + n_neg)):
        rows += [(metric, f"{k}/{n}", "Wilson", *stats.wilson_interval(k, n, alpha), ""),
                 (metric, f"{k}/{n}", "Clopper-Pearson (exact)", *exact_interval(k, n, alpha), ""),
                 (metric, f"{k}/{n}", f"smallest true rate, P(perfect) >= {alpha:g}", smallest_rate(n, alpha), 1.0,
                  "one-sided exact bound: p**n = alpha")]
    cells = stats.cell_indicators(y, s >= 0.5)

    def ba(w: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):  # a resample without a class: NaN, dropped
            return 0.5 * ((w @ cells[:, 0]) / (w @ y) + (w @ cells[:, 3]) / (w @ ~y))

    ba_reps = stats.bootstrap_replicates(ba, y.size, n_boot=n_boot, seed=seed)
    auc_reps = stats.bootstrap_replicates(lambda w: stats.weighted_auc(y, s, w), y.size, n_boot=n_boot, seed=seed)
    dl = stats.delong_auc(y, s)
    rows += [("balanced_accuracy", "1.00", "bootstrap (images)", *stats.percentile_interval(ba_reps, alpha)[:2],
              "every resample is perfect too"),
             ("balanced_accuracy", "1.00", f"smallest true BA, P(perfect) >= {alpha:g}",
              perfect_ba_bound(n_pos, n_neg, alpha), 1.0, f"independent images, se**{n_pos} sp**{n_neg} = alpha"),
             ("auc", "1.00", "DeLong", dl.low, dl.high, "variance 0 at AUC 1: a degenerate interval"),
             ("auc", "1.00", "bootstrap (images)", *stats.percentile_interval(auc_reps, alpha)[:2],
              "every resample with both classes is perfect"),
             ("auc", "1.00", f"smallest true AUC, P(AUC = 1) >= {alpha:g}", perfect_auc_bound(n_pos, n_neg, alpha), 1.0,
              "equal-variance binormal scores")]
    out = pd.DataFrame(rows, columns=["metric", "observed", "method", "low", "high", "note"])
    out.attrs["level"] = level
    return out


# --------------------------------------------------------------------------------------- redraws
def draw_tests(pool: pd.DataFrame, *, n_draws: int = 200, counts: dict[int, int] | None = None,
               seed: int = 0) -> np.ndarray:
    """``(n_draws, n)`` positions into ``pool`` (columns ``label``, ``group_id``): redrawn tests of
    ``counts`` images per label (default 10 COVID+, 5 COVID-), one image per patient group while
    there are enough groups, then further images of already drawn groups (never one image twice)."""
    counts = dict(SNAPSHOT_TEST if counts is None else counts)
    rng = np.random.default_rng(seed)
    labels, groups = pool["label"].to_numpy(), pool["group_id"].astype(str).to_numpy()
    by_label = {}
    for label, n in counts.items():
        pos = np.flatnonzero(labels == label)
        if len(pos) < n:
            raise ValueError(f"{len(pos)} images with label {label} in the pool, {n} needed per test")
        by_label[label] = (pos, groups[pos])
    out = np.empty((n_draws, sum(counts.values())), dtype=np.int64)
    for d in range(n_draws):
        picked = []
        for label, n in counts.items():
            pos, g = by_label[label]
            order = rng.permutation(len(pos))  # a random image order; the first of each group wins
            _, first = np.unique(g[order], return_index=True)
            firsts = order[np.sort(first)]
            firsts = firsts[rng.permutation(len(firsts))]
            rest = np.setdiff1d(order, firsts, assume_unique=True)
            chosen = np.r_[firsts[:n], rng.permutation(rest)[:max(0, n - len(firsts))]]
            picked.append(pos[chosen])
        out[d] = np.concatenate(picked)
    return out


def redraw_metrics(scores: pd.DataFrame, draws: np.ndarray, *, threshold: float = 0.5) -> pd.DataFrame:
    """The metrics of :data:`REDRAW_METRICS` (and DOR) of each redrawn test, one row per draw."""
    y, s = scores["label"].to_numpy(), scores["score"].to_numpy()
    rows = []
    for i, idx in enumerate(draws):
        m = binary_metrics(y[idx], s[idx], threshold=threshold, n_boot=0)
        rows.append({"draw": i, **{k: m[k].value for k in REDRAW_METRICS}, "dor": m.dor_raw})
    return pd.DataFrame(rows)


def redraw_summary(per_draw: pd.DataFrame, fixed: dict[str, float] | None = None,
                   paper: dict[str, float] | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Per metric: the fixed test's and the paper's value, the redraws' median, ``1 - alpha``
    central range, min, max and the share of redraws scoring exactly 1."""
    rows = []
    for m in REDRAW_METRICS:
        v = per_draw[m].dropna().to_numpy()
        lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2]) if len(v) else (np.nan, np.nan)
        rows.append({"metric": m, "fixed test": (fixed or {}).get(m, np.nan), "paper": (paper or {}).get(m, np.nan),
                     "redraw median": float(np.median(v)) if len(v) else np.nan, "redraw low": float(lo),
                     "redraw high": float(hi), "min": float(v.min()) if len(v) else np.nan,
                     "max": float(v.max()) if len(v) else np.nan,
                     "share = 1": float((v == 1.0).mean()) if len(v) else np.nan, "draws": len(v)})
    return pd.DataFrame(rows)


def distinct_draws(draws: np.ndarray) -> int:
    """How many different image sets the redraws hold."""
    return len({tuple(sorted(d)) for d in draws})


def auc_gap(own: pd.DataFrame, other: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0,
            alpha: float = 0.05) -> Estimate:
    """AUC on ``own`` minus AUC on ``other`` (two independent score tables, different patients),
    with a percentile interval from independent patient-cluster bootstraps of each."""
    reps = []
    for i, t in enumerate((own, other)):
        y, s = t["label"].to_numpy().astype(bool), t["score"].to_numpy()
        reps.append(stats.bootstrap_replicates(lambda w: stats.weighted_auc(y, s, w), len(t),
                                               groups=t["group_id"].astype(str).to_numpy(), n_boot=n_boot,
                                               seed=seed + i))
    values = [stats.weighted_auc(t["label"].to_numpy().astype(bool), t["score"].to_numpy(), np.ones((1, len(t))))[0]
              for t in (own, other)]
    low, high, _ = stats.percentile_interval(reps[0] - reps[1], alpha)
    return Estimate(float(values[0] - values[1]), low, high, f"independent cluster bootstraps (n_boot={n_boot})")


def redraw_spread(per_draw: pd.DataFrame, metrics=REDRAW_METRICS, *, tol: float = 1e-9) -> str:
    """One sentence on how far redrawing the test moves each metric: the range of the metrics that
    move, and the value of those that stay the same in every redraw (e.g. a specificity of 1.00
    when no COVID- image crosses the threshold).

    Example:
        >>> redraw_spread(pd.DataFrame({"auc": [0.7, 1.0], "specificity": [1.0, 1.0]}), ("auc", "specificity"))
        'redrawing the 15 images moves auc from 0.70 to 1.00 and leaves specificity at 1.00 in all 2 redraws'
    """
    moving, fixed = [], []
    for m in metrics:
        v = per_draw[m].dropna() if m in per_draw else pd.Series(dtype=float)
        if v.empty:
            continue
        if v.max() - v.min() <= tol:
            fixed.append(f"{m.replace('_', ' ')} at {v.iloc[0]:.2f}")
        else:
            moving.append(f"{m.replace('_', ' ')} from {v.min():.2f} to {v.max():.2f}")
    text = "redrawing the 15 images moves " + (", ".join(moving) or "no metric")
    if fixed:
        text += f" and leaves {', '.join(fixed)} in all {len(per_draw)} redraws"
    return text
