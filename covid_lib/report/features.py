"""C4 seed by seed, for chapter 08 (Fig. 3, Sec. IV-C): the seeds beside the pooled interval.

The protocol decides C4 on one number, pooled over seeds (:func:`covid_lib.report.judge.c4_estimate`).
Issue 17 asks for the seeds beside it: :func:`c4_seed_table` gives, per seed, the source-minus-label
margin of the fine-tuned encoder and of the randomly initialised one and their difference with its
patient-bootstrap interval; then the difference's mean ± SD over the seeds and the pooled estimate
that decides. Descriptive: the pooled row is the protocol's, the rest decides nothing.
"""

from __future__ import annotations

import pandas as pd

from covid_lib.analysis import claims as C
from covid_lib.analysis.seeds import mean_sd_text
from covid_lib.metrics import format_estimate

#: The columns of :func:`c4_seed_table`.
SEED_TABLE_COLUMNS = ("seed", "margin, fine-tuned", "margin, random init.", "change [95% CI]", "role")


def c4_scale(pretrain: str) -> str:
    """The :data:`covid_lib.report.judge.SCALES` key whose ChestXRay pre-training is ``pretrain``."""
    from covid_lib.report.judge import SCALES

    return next(k for k, s in SCALES.items() if s["kermany"] == pretrain)


def c4_seed_table(estimate: C.ClaimEstimate | None, digits: int = 3) -> pd.DataFrame:
    """One row per seed used (margins and change [95% CI over patients]), one per seed left out
    (its reason), then ``mean ± SD`` of the change over the seeds used and the ``pooled`` row (the
    protocol's deciding estimate). Empty without an estimate."""
    if estimate is None or estimate.cells.empty:
        return pd.DataFrame(columns=SEED_TABLE_COLUMNS)
    control = next(c for c in estimate.cells if c.startswith("margin_") and c != "margin_fine_tuned")
    per_seed = estimate.by("seed", means=["margin_fine_tuned", control])
    rows = []
    for r in per_seed.to_dict("records"):
        pooled = r["seed"] == C.POOLED
        rows.append({"seed": "pooled (decides)" if pooled else str(r["seed"]),
                     "margin, fine-tuned": f"{r['margin_fine_tuned']:.{digits}f}",
                     "margin, random init.": f"{r[control]:.{digits}f}",
                     "change [95% CI]": format_estimate(r["estimate"], r["low"], r["high"], digits),
                     "role": "the protocol's estimate" if pooled else "one seed"})
    for r in estimate.left_out.to_dict("records"):
        why = "; ".join(str(r[c]) for c in ("status_a", "status_b") if str(r.get(c, "usable")) != "usable")
        rows.insert(-1, {"seed": str(r.get("seed")), "margin, fine-tuned": "–", "margin, random init.": "–",
                         "change [95% CI]": "–", "role": f"left out: {why}"})
    changes = estimate.cells["estimate"]
    rows.insert(-1, {"seed": "mean ± SD", "margin, fine-tuned": "", "margin, random init.": "",
                     "change [95% CI]": mean_sd_text(changes.mean(), changes.std(ddof=1), len(changes), digits=digits),
                     "role": f"over the {len(changes)} seeds used (descriptive)"})
    return pd.DataFrame(rows, columns=SEED_TABLE_COLUMNS)
