"""Can the Table II grid at the whole-set scale still decide C1 and C2? A projection (issue 17).

The protocol leaves a comparison out when either model is missing, did not learn or collapsed, and
a claim whose comparisons are more than half left out (or fewer than 3 used) decides nothing
(:data:`covid_lib.analysis.protocol.MAX_LEFT_OUT_SHARE`). This script counts the comparisons of C1
(augmented composition against the CORDA-only model, same pre-training and seed) and C2
(pre-trained against scratch, same composition and seed) over seeds 0-4 of ``table2_full``; draws
each missing run as usable with its cell's usable rate among the seeds recorded so far (a Beta(1, 1)
prior: a cell with 0 of 3 usable stays likely unusable), and prints how many comparisons would be
used once every run is recorded and how often the coverage rules would be met. It reads records
only (no scores), and it is a planning number, not a verdict: the runs' outcomes decide.

    python scripts/project_coverage.py [--draws 20000] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

from covid_lib.analysis.protocol import MAX_LEFT_OUT_SHARE, PROTOCOL
from covid_lib.grid import grid_specs
from covid_lib.report.records import spec_records

AUGMENTED = ("CORDA&ChestXRay", "CORDA&RSNA", "CORDA&COVID-ChestXRay")
COMPOSITIONS = ("CORDA", *AUGMENTED, "COVID-ChestXRay")
SEEDS = range(5)


def comparisons() -> dict[str, list[tuple[tuple, tuple]]]:
    """Each claim's comparisons as pairs of (pretrain, composition, seed) cells, as the protocol pairs them."""
    c1 = [((p, x, s), (p, "CORDA", s)) for p in ("none", "kermany_full", "nih") for s in SEEDS for x in AUGMENTED]
    c2 = [((p, x, s), ("none", x, s)) for p in ("kermany_full", "nih") for s in SEEDS for x in COMPOSITIONS]
    return {"C1": c1, "C2": c2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    recs = spec_records(grid_specs("table2_full", "cpu"))
    recs = recs[recs["arch"] == "resnet18"]
    status = {(r.pretrain, r.composition, int(r.seed)): r.status for r in recs.itertuples()}
    rate: dict[tuple, tuple[int, int]] = {}
    for (p, c, _), st in status.items():
        usable, recorded = rate.get((p, c), (0, 0))
        rate[(p, c)] = (usable + (st == "done"), recorded + (st != "missing"))
    print("usable / recorded seeds per cell (pre-training, composition):")
    for (p, c), (u, n) in sorted(rate.items()):
        print(f"  {p:<13} {c:<22} {u}/{n}")
    rng = np.random.default_rng(args.seed)
    for claim, pairs in comparisons().items():
        draw = {}
        for cell in sorted({k for pair in pairs for k in pair}):
            st = status.get(cell, "missing")
            if st == "missing":
                u, n = rate.get(cell[:2], (0, 0))
                draw[cell] = rng.random(args.draws) < rng.beta(u + 1, n - u + 1, args.draws)
            else:
                draw[cell] = np.full(args.draws, st == "done")
        used = sum(draw[a] & draw[b] for a, b in pairs)
        met = ((1 - used / len(pairs)) <= MAX_LEFT_OUT_SHARE) & (used >= PROTOCOL[claim].min_used)
        now = sum(status.get(a) == "done" and status.get(b) == "done" for a, b in pairs)
        lo, hi = np.percentile(used, [2.5, 97.5])
        print(f"{claim}: {len(pairs)} comparisons, {now} usable now; once every run is recorded: "
              f"{used.mean():.1f} used [{lo:.0f}, {hi:.0f}], coverage rules met in {met.mean():.1%} of draws "
              f"(needs at least {int(np.ceil(len(pairs) * (1 - MAX_LEFT_OUT_SHARE)))} used)")


if __name__ == "__main__":
    main()
