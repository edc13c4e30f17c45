"""Train the fp32 twins of a grid's bf16 runs: the precision control (issue 17).

The 33 runs still missing from ``table3_full`` and ``resolution`` ask for bf16, which only some CPUs
compute natively. On a CPU without it a run becomes its fp32 twin (same spec, ``precision="fp32"``,
another run id), which no verdict counts. Whether twins could ever stand in for the missing bf16
runs is a question of data, answered here before anyone asks it of a deciding cell.

The control, fixed on 2026-12-04 before any of its twins was trained (this file's first commit):

- **Runs:** the fp32 twin of every run of ``conv8_full`` (three Conv8 pre-trainings on the whole
  ChestXRay set, and the 30 fine-tunes: five compositions x {from scratch, pre-trained on
  kermany_full} x seeds 0-2), each fine-tune starting from its fp32 twin pre-training, against the
  bf16 records of the same specs. The twin differs in precision *and* machine: it is what filling
  a missing cell on this machine would produce.
- **Estimand:** the mean over pairs of AUC(fp32 twin) minus AUC(bf16 record) on the fine-tune's own
  composition's test set; a pair is left out (and counted) when either model did not learn (best
  validation AUC < 0.6) or collapsed (own-test scores all on one side of 0.5, or a 5-95% range
  < 0.001), the protocol's rules.
- **Test:** paired patient-cluster bootstrap (2000 replicates, seed 0, one set of draws over every
  test patient of the five test sets), 95% percentile interval; MDE as in the protocol.
- **Rule (equivalence, the margin of C3):** *precision negligible* when the interval lies inside
  (-0.05, +0.05); *precision matters* when it lies wholly outside; *inconclusive* otherwise, and
  with fewer than 3 usable pairs or more than half left out.
- **Noise floor, reported beside:** the mean absolute AUC difference between twins, against the
  same between two bf16 seeds of one cell (what another seed changes), and how often the twins
  agree on did-not-learn and collapsed.
- **What it decides:** no claim. It is the evidence a later protocol version would need before
  letting fp32 twins fill missing bf16 cells; Conv8 is chosen because its 33 twins fit in one
  session on 2 cores, which leaves the deeper models' precision sensitivity unmeasured.

    nohup python scripts/run_precision_control.py > precision.log 2>&1 &
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from covid_lib.grid import grid_specs, run_grid

#: The grid whose bf16 runs are twinned.
GRID = "conv8_full"


def twin_specs(grid: str = GRID, profile: str = "cpu") -> list:
    """The fp32 twins of ``grid``'s runs, fine-tunes from scratch first (they need no pre-training),
    then each pre-training before its fine-tunes."""
    twins = [replace(s, precision="fp32") for s in grid_specs(grid, profile)]
    return sorted(twins, key=lambda s: (s.task == "pretrain" or s.pretrain is not None, s.seed, s.task != "pretrain"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="cpu")
    args = parser.parse_args()
    specs = twin_specs(GRID, args.profile)
    print(f"{len(specs)} fp32 twins of {GRID}", flush=True)
    print(run_grid(specs, args.profile).summary(), flush=True)
