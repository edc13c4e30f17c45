"""The precision control (issue 17): fp32 twins of bf16 runs against their bf16 records.

A run of the ``cpu`` profile computes in bf16, which only some CPUs do natively; elsewhere it
becomes its fp32 twin (same spec, ``precision="fp32"``, another run id), which no verdict counts.
Whether a twin could stand in for a missing bf16 run is measured here, under a rule fixed before the
twins were trained (``scripts/run_precision_control.py``, first commit 2026-12-04):

- **estimand:** the mean over (architecture, pre-training, composition, seed) pairs of AUC(fp32
  twin) minus AUC(bf16 record) on the composition's own test set, paired patient-cluster bootstrap
  as a claim's (:func:`covid_lib.analysis.claims.paired_own_test`); a pair whose model did not learn
  or collapsed is left out and counted, as the protocol leaves models out;
- **rule (equivalence, C3's margin):** ``negligible`` when the 95% interval lies inside
  (-margin, +margin); ``matters`` when it lies wholly outside; ``inconclusive`` otherwise, and with
  fewer than :data:`covid_lib.analysis.protocol.MIN_PAIRS` usable pairs or more than half left out;
- **noise floor, beside:** the mean absolute AUC difference between twins against the same between
  two seeds of one cell at one precision (what another seed changes), and how often the twins agree
  on the record's status (did not learn, collapsed).

The twin differs in precision *and* in the machine that trained it: it is what filling a missing
cell on a CPU without bf16 would give. It decides no claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from covid_lib.analysis import protocol as P
from covid_lib.analysis.claims import ClaimEstimate, paired_own_test

#: Twins whose mean AUC difference lies inside +-MARGIN are called negligible: C3's margin, the
#: largest AUC difference the protocol calls "not better".
MARGIN = P.rule("C3").margin
#: The cell a pair of twins shares (everything but the precision).
CELL = ("arch", "pretrain", "composition", "seed")
OUTCOMES = ("negligible", "matters", "inconclusive")


@dataclass
class PrecisionControl:
    """The control's decision (:data:`OUTCOMES`), its paired estimate and what is shown beside."""

    outcome: str
    reason: str
    estimate: ClaimEstimate
    mde: float
    noise: pd.DataFrame = field(repr=False)
    statuses: pd.DataFrame = field(repr=False)

    def summary(self) -> str:
        e = self.estimate
        return (f"precision control: {self.outcome} ({self.reason}); AUC(fp32) - AUC(bf16) on the own test set "
                f"{e.estimate:+.3f} [{e.low:+.3f}, {e.high:+.3f}], MDE {self.mde:.3f}, {e.n_used} pairs used, "
                f"{e.n_left_out} left out, {e.n_patients} patients")


def decide_equivalence(low: float, high: float, *, n_used: int, n_left_out: int, margin: float = MARGIN
                       ) -> tuple[str, str]:
    """``(outcome, reason)`` of the equivalence rule (module docstring) for a 95% interval."""
    total = n_used + n_left_out
    if n_used < P.MIN_PAIRS:
        return "inconclusive", f"fewer than {P.MIN_PAIRS} usable pairs decide nothing"
    if total and n_left_out / total > P.MAX_LEFT_OUT_SHARE:
        return "inconclusive", f"more than {P.MAX_LEFT_OUT_SHARE:.0%} of the pairs left out decide nothing"
    if not (low == low and high == high):
        return "inconclusive", "no interval"
    if -margin < low and high < margin:
        return "negligible", f"the interval lies inside +-{margin:.2f}"
    if high < -margin or low > margin:
        return "matters", f"the interval lies outside +-{margin:.2f}"
    return "inconclusive", f"the interval reaches +-{margin:.2f}"


def noise_floor(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute own-test AUC difference: between the two precisions of one seed (the pairs of
    ``cells``), and between two seeds of one cell at each precision, over the cells' used pairs."""
    rows = [{"difference": "fp32 twin vs bf16 record (same seed)", "n": len(cells),
             "mean_abs_auc_diff": float((cells["auc_fp32"] - cells["auc_bf16"]).abs().mean()) if len(cells) else np.nan}]
    for precision in ("bf16", "fp32"):
        diffs = []
        for _, g in cells.groupby(["arch", "pretrain", "composition"], sort=False):
            aucs = g[f"auc_{precision}"].to_numpy()
            diffs += [abs(a - b) for a, b in combinations(aucs, 2)]
        rows.append({"difference": f"two seeds of one cell, both {precision}", "n": len(diffs),
                     "mean_abs_auc_diff": float(np.mean(diffs)) if diffs else np.nan})
    return pd.DataFrame(rows)


def status_agreement(records: pd.DataFrame) -> pd.DataFrame:
    """How the bf16 records' statuses (rows) meet their twins' (columns), one count per cell."""
    bf16 = records[records["precision"] == "bf16"].set_index(list(CELL))["status"]
    fp32 = records[records["precision"] == "fp32"].set_index(list(CELL))["status"]
    both = pd.concat({"bf16": bf16, "fp32": fp32}, axis=1).fillna("missing")
    return pd.crosstab(both["bf16"], both["fp32"])


def estimate_precision(records: pd.DataFrame, *, margin: float = MARGIN, n_boot: int = P.N_BOOT,
                       seed: int = P.BOOT_SEED) -> PrecisionControl:
    """The precision control on ``records`` (:func:`covid_lib.report.records.spec_records` rows of
    the bf16 runs and of their fp32 twins, ``precision`` holding each run's effective precision)."""
    cells = records.loc[records["precision"] == "bf16", list(CELL)].drop_duplicates()
    pairs = [(dict(zip(CELL, c)), {**dict(zip(CELL, c)), "precision": "fp32"},
              {**dict(zip(CELL, c)), "precision": "bf16"}) for c in cells.itertuples(index=False)]
    est = paired_own_test(records, pairs, claim="precision", names=("auc_fp32", "auc_bf16"), n_boot=n_boot, seed=seed)
    outcome, reason = decide_equivalence(est.low, est.high, n_used=est.n_used, n_left_out=est.n_left_out,
                                         margin=margin)
    return PrecisionControl(outcome, reason, est, P.mde(est.se) if est.n_used else np.nan,
                            noise_floor(est.cells) if est.n_used else noise_floor(pd.DataFrame(
                                columns=[*CELL, "auc_fp32", "auc_bf16"])), status_agreement(records))
