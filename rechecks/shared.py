"""What every recheck in this folder computes the same way, written once. Like the scripts, it
imports nothing from ``covid_lib`` and was written without reading it: the protocol's text
(``book/protocol.md``) is the specification.

- :func:`pair_matrix` and :func:`weighted_auc`: the Mann-Whitney AUC (ties count 1/2) under
  bootstrap weights, one row of weights per replicate; :func:`patient_draws`: the one set of
  multinomial patient draws a claim shares; :class:`TestSetAUCs`: every record's point and
  replicate AUCs on the claim's test sets, checked against a reference record's images;
- :func:`pool_defined`: the pooled estimate, percentile interval, SE and MDE over the replicates
  in which every comparison is defined;
- :func:`variant_reason`: whether a record is a default-variant grid run (cpu profile, 128 px,
  nothing frozen, adapted or planted, no precision override);
- :func:`record_reason`: whether a record is a candidate (default variant, and older than the
  whole-set scale at the 563-image scale); :func:`record_scores`: a record's scores, read once;
- :func:`collapse_reason`: the protocol's collapse rule on a model's own-test scores, or, with
  ``--keep-threshold-collapsed`` (:func:`add_collapse_option`, :func:`apply_collapse_option`), the
  collapse-rule sensitivity reading's (spread only);
- :func:`read_specs` and :func:`whole_set_start`: the run records' specs, and when the whole-set
  (``kermany_full``) scale began, which separates the older 563-image records;
- :func:`decide`: the directional rule (reproduced, not reproduced, no detectable effect,
  inconclusive).

The scripts run as ``python rechecks/recheck_<claim>.py``, so this folder is first on ``sys.path``
and ``from shared import ...`` finds this file.
"""

from __future__ import annotations

import functools
import glob
import json
import os

import numpy as np
import pandas as pd
from scipy.stats import norm

#: The decision threshold a collapsed model's scores all sit on one side of.
THRESHOLD = 0.5
#: The smallest 5-95% range of a usable model's scores.
MIN_SPREAD = 0.001
#: MDE = Z x the bootstrap SE: a two-sided 5% test with 80% power.
Z = float(norm.ppf(0.975) + norm.ppf(0.8))


def pair_matrix(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n_pos, n_neg): 1 where the positive outscores the negative, 1/2 on a tie, else 0."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return (pos[:, None] > neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])


def weighted_auc(C: np.ndarray, wpos: np.ndarray, wneg: np.ndarray) -> np.ndarray:
    """AUC per replicate from :func:`pair_matrix` ``C`` and the weights of the positives ``(B, n_pos)``
    and negatives ``(B, n_neg)``; NaN where a replicate has no weight on one class."""
    num = np.einsum("bi,ij,bj->b", wpos, C, wneg, optimize=True)
    den = wpos.sum(1) * wneg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def patient_draws(groups: list, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, len(groups))``: how often each patient is drawn in each replicate (N out of N)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(len(groups), np.full(len(groups), 1.0 / len(groups)), size=n_boot).astype(float)


class TestSetAUCs:
    """Point and replicate AUCs of records on fixed test sets, under one set of patient draws.

    ``ref`` (a record's scores) fixes each test set's images, labels and patients; the draws
    (:func:`patient_draws`, ``n_boot`` with ``seed``) run over every patient of its ``test_sets``
    (``groups``). A record that scores other images on one of them stops the recheck. Each record's
    AUCs are computed once.
    """

    def __init__(self, ref: pd.DataFrame, test_sets: list[str], n_boot: int, seed: int) -> None:
        ref = ref[ref.test_set.isin(test_sets)]
        self.groups = sorted(ref.group_id.unique())
        gidx = {g: i for i, g in enumerate(self.groups)}
        counts = patient_draws(self.groups, n_boot, seed)
        self.info = {}
        for ts in test_sets:
            t = ref[ref.test_set == ts].sort_values("image_id").reset_index(drop=True)
            lab = t.label.to_numpy(int)
            w = counts[:, [gidx[g] for g in t.group_id]]
            self.info[ts] = dict(ids=t.image_id.to_numpy(), groups=t.group_id.to_numpy(), lab=lab,
                                 wpos=w[:, lab == 1], wneg=w[:, lab == 0])
        self._cache: dict[str, dict] = {}

    def __call__(self, name: str, df: pd.DataFrame) -> dict[str, tuple[float, np.ndarray]]:
        """``{test set: (point AUC, (B,) replicate AUCs)}`` of the record ``name`` scored ``df``."""
        if name in self._cache:
            return self._cache[name]
        out = {}
        for ts, info in self.info.items():
            t = df[df.test_set == ts].sort_values("image_id").reset_index(drop=True)
            if len(t) != len(info["ids"]) or (t.image_id.to_numpy() != info["ids"]).any():
                raise SystemExit(f"{name}: test set {ts} differs from the reference images")
            if (t.label.to_numpy(int) != info["lab"]).any() or (t.group_id.to_numpy() != info["groups"]).any():
                raise SystemExit(f"{name}: labels or patients of {ts} differ from the reference")
            C = pair_matrix(t.score.to_numpy(float), info["lab"])
            out[ts] = (float(C.mean()), weighted_auc(C, info["wpos"], info["wneg"]))
        self._cache[name] = out
        return out


def pool_defined(rows: list[np.ndarray], points: list[float]) -> dict:
    """Mean of ``points``; percentile interval (2.5, 97.5), SE and MDE of the mean of the replicate
    ``rows`` over the replicates where every row is defined (``n_nan``: those dropped)."""
    if not rows:
        nan = float("nan")
        return dict(estimate=nan, low=nan, high=nan, se=nan, mde=nan, n_nan=0)
    Bt = np.vstack(rows)
    valid = ~np.isnan(Bt).any(0)
    pb = Bt[:, valid].mean(0)
    lo, hi = (float(x) for x in np.percentile(pb, [2.5, 97.5]))
    se = float(np.std(pb, ddof=1))
    return dict(estimate=float(np.mean(points)), low=lo, high=hi, se=se, mde=Z * se, n_nan=int((~valid).sum()))


def variant_reason(s: dict, pipelines: tuple[str, ...] = ("paper",)) -> str | None:
    """None for the spec ``s`` of a default-variant COVID grid run of one of ``pipelines``, else
    the first reason it is a variant."""
    if s.get("task") != "covid":
        return f"task {s.get('task')}"
    if s.get("profile") != "cpu":
        return f"profile {s.get('profile')}"
    if s.get("pipeline") not in pipelines:
        return f"pipeline {s.get('pipeline')}"
    if s.get("input_size") != 128:
        return f"input_size {s.get('input_size')}"
    for k in ("freeze", "adapt", "plant"):
        if s.get(k) not in (None, False):
            return f"{k} {s.get(k)}"
    if s.get("precision") is not None:
        return f"precision override {s.get('precision')}"
    return None


def record_reason(j: dict, before: pd.Timestamp | None, pipelines: tuple[str, ...] = ("paper",)) -> str | None:
    """Why the record ``j`` (a ``spec.json``) is not a candidate: :func:`variant_reason` of its
    spec, else, when ``before`` is given (the 563-image scale), that it was made after the
    whole-set scale began; None when it is a candidate."""
    why = variant_reason(j.get("spec", {}), pipelines)
    if not why and before is not None and pd.Timestamp(j["created"]) >= before:
        why = f"not an older record (created {j['created']}, whole-set scale began {before})"
    return why


@functools.lru_cache(maxsize=None)
def record_scores(d: str | os.PathLike) -> pd.DataFrame:
    """The record folder ``d``'s ``scores.csv``, patient and image ids as text, read once."""
    df = pd.read_csv(os.path.join(d, "scores.csv"))
    df["group_id"] = df["group_id"].astype(str)
    df["image_id"] = df["image_id"].astype(str)
    return df


#: The collapse-rule sensitivity reading (``--keep-threshold-collapsed``, set by
#: :func:`apply_collapse_option`): when True, :func:`collapse_reason` reads the spread condition
#: only, so a model whose scores all fall on one side of 0.5 but spread over at least 0.001 is kept.
#: Models that did not learn are each script's own reading and stay out either way.
KEEP_THRESHOLD_COLLAPSED = False
#: How ``--keep-threshold-collapsed`` is described, in the scripts' help and their ``--json``.
SPREAD_ONLY_RULE = (f"keep the models whose own-test scores all fall on one side of {THRESHOLD} but spread over at "
                    f"least {MIN_SPREAD:g} (5-95% range): collapsed only when the spread is under {MIN_SPREAD:g}; "
                    "did-not-learn unchanged")


def add_collapse_option(ap) -> None:
    """Add ``--keep-threshold-collapsed`` to the argument parser ``ap``."""
    ap.add_argument("--keep-threshold-collapsed", action="store_true",
                    help="sensitivity reading: " + SPREAD_ONLY_RULE.replace("%", "%%"))


def apply_collapse_option(args) -> dict:
    """Set :data:`KEEP_THRESHOLD_COLLAPSED` from parsed ``args``; returns what a script adds to its
    ``--json`` (nothing under the protocol's rule, so the default output is unchanged)."""
    global KEEP_THRESHOLD_COLLAPSED
    KEEP_THRESHOLD_COLLAPSED = bool(getattr(args, "keep_threshold_collapsed", False))
    if KEEP_THRESHOLD_COLLAPSED:
        print(f"COLLAPSE RULE (--keep-threshold-collapsed, sensitivity reading): {SPREAD_ONLY_RULE}")
        return {"collapse_rule": SPREAD_ONLY_RULE}
    return {}


def collapse_reason(scores: np.ndarray, what: str = "own-test", spread_only: bool | None = None) -> str | None:
    """Why finite, non-empty scores are a collapsed model's (all on one side of 0.5, or a 5-95%
    range under 0.001), else None. Empty or non-finite scores are each script's own reading.
    ``spread_only`` (default :data:`KEEP_THRESHOLD_COLLAPSED`): read the spread condition only."""
    s = np.asarray(scores, float)
    if spread_only is None:
        spread_only = KEEP_THRESHOLD_COLLAPSED
    if not spread_only and ((s >= THRESHOLD).all() or (s < THRESHOLD).all()):
        return f"collapsed ({what} scores all on one side of 0.5)"
    if np.percentile(s, 95) - np.percentile(s, 5) < MIN_SPREAD:
        return f"collapsed ({what} 5-95% range < 0.001)"
    return None


def read_specs(results: str | os.PathLike) -> list[tuple[str, dict]]:
    """``(record folder, spec.json)`` of every record under ``results``, in name order."""
    out = []
    for p in sorted(glob.glob(os.path.join(results, "*", "spec.json"))):
        with open(p) as f:
            out.append((os.path.dirname(p), json.load(f)))
    return out


def whole_set_start(specs: list[tuple[str, dict]]) -> pd.Timestamp | None:
    """The earliest ``created`` of a record pre-trained on, or pre-training on, ``kermany_full``:
    records made before it are the older (563-image) scale's. None without such a record."""
    t = [pd.Timestamp(j["created"]) for _, j in specs
         if "kermany_full" in (j.get("spec", {}).get("pretrain"), j.get("spec", {}).get("composition"))
         and j.get("created")]
    return min(t) if t else None


def decide(low: float, high: float, mde: float, n_used: int, n_plan: int, min_used: int = 3) -> tuple[str, str]:
    """The directional rule: ``(outcome, why)``. Inconclusive with fewer than ``min_used`` usable
    comparisons (3 for the paper's claims, 1 for the findings) or more than half of the planned left
    out; then reproduced above 0, not reproduced below 0, no detectable effect when the interval
    holds 0 and its upper end stays below the MDE, else inconclusive."""
    if n_used < min_used or (n_plan - n_used) > 0.5 * n_plan:
        return "inconclusive", f"fewer than {min_used} usable comparisons or more than 50% left out"
    if low > 0:
        return "reproduced", "interval above 0"
    if high < 0:
        return "not reproduced", "interval below 0"
    if high < mde:
        return "no detectable effect", "interval includes 0 and its upper end is below the MDE"
    return "inconclusive", "interval includes 0 and reaches the MDE"


def write_json(path: str | os.PathLike, out: dict, **dumps) -> None:
    """Write a recheck's numbers (``--json PATH``), creating the folder; ``dumps``: options of
    :func:`json.dumps` (default ``indent=1``)."""
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, **{"indent": 1, **dumps}))
