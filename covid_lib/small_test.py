"""The small-test-set trap (Tartaglione et al. 2020, Sec. IV-C, Table IV): what a "perfect" score on
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
- *Table IV* from run records (:func:`load_cells`, :func:`table_four`, :func:`seed_summary`) and the
  verdict of claim C5 (:func:`c5_verdict`).

Example:
    >>> round(smallest_rate(5), 3), round(exact_interval(5, 5)[0], 3)
    (0.549, 0.478)
    >>> round(chance_of_perfect(0.9, 0.8), 3)
    0.114
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import integrate, optimize
from scipy.stats import beta, norm

from covid_lib import stats
from covid_lib.data.compose import SNAPSHOT_TEST
from covid_lib.metrics import Estimate, binary_metrics, format_estimate
from covid_lib.verdicts import Verdict

N_POS, N_NEG = SNAPSHOT_TEST[1], SNAPSHOT_TEST[0]
REDRAW_METRICS = ("auc", "balanced_accuracy", "sensitivity", "specificity", "accuracy")
TABLE4_SETS = ("COVID-ChestXRay", "CORDA")
PAPER_RULE = "paper (0.5)"


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
              perfect_ba_bound(n_pos, n_neg, alpha), 1.0, "independent images, se**10 sp**5 = alpha"),
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


# ------------------------------------------------------------------------------------- Table IV
def paper_table_four() -> pd.DataFrame:
    """The paper's Table IV (COVID-Net and ResNet-18 trained on COVID-ChestXRay)."""
    with resources.as_file(resources.files("covid_lib.paper") / "tartaglione2020_tables.csv") as p:
        table = pd.read_csv(Path(p))
    return table[table["table"] == "IV"].reset_index(drop=True)


@dataclass
class Cell:
    """One Table IV run: pre-training, seed, run id, state (``done``, ``did not learn``, ``failed``,
    ``missing``) and its record when finished."""

    pretrain: str
    seed: int
    run_id: str
    state: str
    result: object = None  # covid_lib.runs.RunResult


def load_cells(specs) -> list[Cell]:
    """The cells of ``specs`` (fine-tunes only) with their records where they exist."""
    from covid_lib.runs import is_finished, load_result, read_failure

    cells = []
    for spec in (s for s in specs if s.task == "covid"):
        result, state = None, "missing"
        if is_finished(spec):
            result = load_result(spec)
            state = "did not learn" if result.did_not_learn else "done"
        elif read_failure(spec.run_id) is not None:
            state = "failed"
        cells.append(Cell(spec.pretrain or "none", spec.seed, spec.run_id, state, result))
    return cells


def _metric_rows(cell: Cell, test_sets, rule: str) -> pd.DataFrame:
    t = cell.result.metrics
    return t[(t["test_set"].isin(test_sets)) & (t["threshold_rule"] == rule)]


def table_four(cells: list[Cell], *, test_sets=TABLE4_SETS, rule: str = PAPER_RULE,
               metrics=("sensitivity", "specificity", "f_score", "accuracy", "balanced_accuracy", "auc", "dor"),
               digits: int = 2) -> pd.DataFrame:
    """Ours (one row per cell and test set, ``value [low, high]``) under the paper's ResNet-18 rows."""
    paper = paper_table_four()
    rows = [{"who": "paper", "pretrain": "ImageNet (their code)", "seed": "", "test_set": r["test_dataset"],
             "state": "", "n": "", **{m: f"{r[m]:.2f}" if r[m] != np.inf else "∞" for m in metrics}}
            for _, r in paper[paper["architecture"] == "ResNet-18"].iterrows()]
    for cell in cells:
        if cell.result is None:
            rows += [{"who": "ours", "pretrain": cell.pretrain, "seed": cell.seed, "test_set": t, "state": cell.state,
                      "n": "", **{m: cell.state for m in metrics}} for t in test_sets]
            continue
        for _, r in _metric_rows(cell, test_sets, rule).iterrows():
            rows.append({"who": "ours", "pretrain": cell.pretrain, "seed": cell.seed, "test_set": r["test_set"],
                         "state": cell.state, "n": int(r["n"]),
                         **{m: format_estimate(r[m], r[f"{m}_low"], r[f"{m}_high"], digits) for m in metrics}})
    return pd.DataFrame(rows)


def seed_summary(cells: list[Cell], *, test_sets=TABLE4_SETS, rule: str = PAPER_RULE,
                 metrics=("sensitivity", "specificity", "balanced_accuracy", "auc"), seeds=(0, 1, 2)) -> pd.DataFrame:
    """Mean ± SD over the finished seeds per pre-training and test set; missing and "did not learn"
    seeds are named, and only runs that learned enter the mean."""
    rows = []
    for pre in dict.fromkeys(c.pretrain for c in cells):
        mine = {c.seed: c for c in cells if c.pretrain == pre}
        learned = [c for s, c in mine.items() if c.state == "done"]
        note = ", ".join(f"seed {s}: {mine[s].state if s in mine else 'missing'}" for s in seeds
                         if s not in mine or mine[s].state != "done")
        for t in test_sets:
            row = {"pretrain": pre, "test_set": t, "seeds": f"{len(learned)} of {len(seeds)}", "not in the mean": note}
            for m in metrics:
                v = [float(_metric_rows(c, [t], rule)[m].iloc[0]) for c in learned if len(_metric_rows(c, [t], rule))]
                row[m] = (f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}" if len(v) > 1 else
                          f"{v[0]:.2f} (one seed)" if v else "–")
            rows.append(row)
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------- verdict
def c5_verdict(*, fixed: dict[str, float], pool_auc: Estimate, corda_auc: Estimate, corda_ba: Estimate,
               gap: Estimate, redraws: pd.DataFrame, state: str, differs: str,
               evidence: str = "07_small_test") -> Verdict:
    """Claim C5 from the headline cell's numbers.

    ``near-perfect`` = the fixed 15-image test has AUC >= 0.95 and BA >= 0.9 (paper: 1.00 / 1.00);
    ``fails elsewhere`` = the AUC gap (all test patients of the set minus CORDA, independent
    bootstraps) has its interval above 0. Reproduced when both hold; not reproduced when the model
    is demonstrably not near-perfect on its own test patients (pool AUC interval below 0.95) and
    no gap is shown; inconclusive otherwise (or when the run did not learn).
    """
    near = fixed.get("auc", np.nan) >= 0.95 and fixed.get("balanced_accuracy", np.nan) >= 0.9
    fails = gap.low > 0
    med = redraws.set_index("metric")
    deciding = (f"fixed 15-image test AUC {fixed.get('auc', np.nan):.2f}, BA {fixed.get('balanced_accuracy', np.nan):.2f}; "
                f"redraws (median, 95% range) AUC {med.loc['auc', 'redraw median']:.2f} "
                f"[{med.loc['auc', 'redraw low']:.2f}, {med.loc['auc', 'redraw high']:.2f}]; all test patients AUC "
                f"{pool_auc.format()}; CORDA AUC {corda_auc.format()}, BA {corda_ba.format()}; "
                f"AUC gap own - CORDA {gap.format()}")
    if state != "done":
        verdict = "inconclusive"
        deciding = f"the headline run {state}; " + deciding
    elif near and fails:
        verdict = "reproduced"
    elif not near and pool_auc.high < 0.95 and not fails:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return Verdict("C5", "A model trained on COVID-ChestXRay is near-perfect on its own 15-image test and fails "
                   "elsewhere (Table IV).", verdict, deciding, differs, evidence)
