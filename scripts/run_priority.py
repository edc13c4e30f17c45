"""Run the reproduction's grids in the order the chapters need them, resuming (finished runs skip).

On a slow machine (2 cores without bf16 train ResNet-18 at about 15 images/s) the named grids,
one after another, would leave the claims that need few runs for last. This orders the runs of
all grids so that each claim gets its cheapest deciding runs first: the from-scratch row of
Table II (C1) with Table IV's cell (C5), the pre-processing ablation from scratch (C6), Conv8 from
scratch (C3), the ChestXRay pre-training and its key fine-tunes (C2, C4), more seeds, then the rest (RSNA pre-training, ResNet-50,
the precision grid). Every run is the same RunSpec as in its named grid, so `grid status NAME`
counts it.

    nohup python scripts/run_priority.py > grid.log 2>&1 &
    python scripts/run_priority.py cpu --fp32-twins   # on a CPU without native bf16: the fp32 twins
"""

from __future__ import annotations

import argparse

from covid_lib.grid import grid_specs, run_grid


def ordered_specs(profile: str = "cpu") -> list:
    g = {name: grid_specs(name, profile) for name in ("table2", "ablation", "conv8", "seeds", "table3", "precision")}

    def pick(specs, **where):
        return [s for s in specs if all(getattr(s, k) == v for k, v in where.items())]

    t2, ab, c8, sd = g["table2"], g["ablation"], g["conv8"], g["seeds"]
    scratch = pick(t2, pretrain=None, task="covid")
    first = [
        *pick(scratch, composition="CORDA"), *pick(scratch, composition="CORDA&ChestXRay"),
        *pick(scratch, composition="CORDA&RSNA"),                     # Table II from scratch (C1)
        *pick(scratch, composition="COVID-ChestXRay"),                # Table IV (C5)
        *pick(ab, pretrain=None, composition="CORDA"),                # C6 from scratch
        *pick(ab, pretrain=None, composition="CORDA&ChestXRay"),
        *pick(c8, pretrain=None),                                     # C3: Conv8 from scratch
        *pick(t2, task="pretrain", composition="kermany"),            # the ChestXRay encoder
        *[s for c in ("CORDA&ChestXRay", "CORDA", "COVID-ChestXRay")  # C2, C4
          for s in pick(t2, pretrain="kermany", composition=c)],
        *scratch,                                                     # the rest of the scratch row
        *pick(sd, pretrain=None, task="covid"),                       # seeds of the scratch cells
        *pick(t2, pretrain="kermany"),                                # the other ChestXRay fine-tunes
        *ab, *c8, *t2, *sd, *g["table3"], *g["precision"],
    ]
    seen, out = set(), []
    for s in first:
        if s.run_id not in seen:
            seen.add(s.run_id)
            out.append(s)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="cpu", help="compute profile (default cpu)")
    parser.add_argument("--fp32-twins", action="store_true",
                        help="on a CPU without native bf16, train the fp32 twins (other run ids) of the bf16 runs")
    args = parser.parse_args()
    specs = ordered_specs(args.profile)
    print(f"{len(specs)} runs in order", flush=True)
    try:
        report = run_grid(specs, args.profile, fp32_twins=args.fp32_twins)
    except ValueError as err:  # e.g. a bf16 grid on a CPU without bf16: say why, no traceback
        raise SystemExit(f"run_priority: {err}") from None
    print(report.summary(), flush=True)
