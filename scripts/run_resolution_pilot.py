"""Train the fp32 pilot of the resolution check (issue 17) on a CPU without native bf16.

The ``resolution`` grid (ResNet-18 at the paper's 224 px on CORDA and CORDA&ChestXRay, from scratch
and pre-trained on the whole ChestXRay set, seeds 0-2) is bf16, and none of its 15 runs is recorded:
a CPU without AVX-512 BF16 or AMX cannot add them. What such a CPU can do is compare the two input
sizes at *one* precision: the from-scratch half of the grid as fp32 twins (224 px), against the fp32
twins of the same cells at 128 px that the precision control trained (arm ``resnet18``, recorded
2026-12-02 and 2026-12-04). The pre-trained half needs three 224-px pre-trainings on the whole set,
several hours each in fp32 here, and is left out.

The pilot, fixed on 2026-12-05 at 01:37 UTC (this file's first commit), before any of its runs was
trained:

- **Runs:** the fp32 twins (``precision="fp32"``, other run ids) of the six from-scratch fine-tunes of
  grid ``resolution``: CORDA and CORDA&ChestXRay x seeds 0-2, 224 px.
- **What it reports** (:func:`covid_lib.report.resolution.pilot_records`, the same code as the
  check): the size effect, AUC at 224 px minus AUC at 128 px on each model's own test set, paired
  on the same patients and pooled over the cells with a patient-cluster interval
  (:func:`covid_lib.report.resolution.size_effect`); and C1's rule applied to these cells at each
  size (:func:`covid_lib.report.resolution.cell_verdicts`, from scratch only). A model that did not
  learn or collapsed is left out and counted, as the protocol leaves models out; the collapse
  sensitivity reading (models collapsed at the threshold only kept) is reported beside.
- **What it decides:** nothing. It is not the resolution check (which is bf16, and which also needs
  the pre-trained cells); it says what the input size does to a from-scratch ResNet-18 at fp32 on
  this CPU, where the check cannot run.

    nohup python scripts/run_resolution_pilot.py > pilot.log 2>&1 &
    python scripts/run_resolution_pilot.py --report     # bench/results/resolution_pilot.{md,json}
"""

from __future__ import annotations

import argparse
from covid_lib.grid import run_grid


def pilot_specs(profile: str = "cpu") -> list:
    """The pilot's runs: fp32 twins of grid ``resolution``'s from-scratch fine-tunes, seed by seed."""
    from covid_lib.report.resolution import resolution_specs

    _, high = resolution_specs(profile, pretrains=("none",), precision="fp32")
    return sorted(high, key=lambda s: (s.seed, s.composition))


def report(profile: str = "cpu") -> str:
    """Write the pilot's page and numbers to ``bench/results/resolution_pilot.{md,json}``; return its
    first finding."""
    import json
    from pathlib import Path

    from covid_lib.report.resolution import cell_verdicts, pilot_markdown, pilot_records, size_effect, summary
    from covid_lib.report.sensitivity import keep_threshold_collapsed

    out = Path(__file__).resolve().parents[1] / "bench" / "results" / "resolution_pilot"
    records = pilot_records(profile)
    out.with_suffix(".md").write_text(pilot_markdown(records))
    numbers = {}
    for name, recs in (("protocol", records), ("threshold_collapsed_kept", keep_threshold_collapsed(records))):
        e = size_effect(recs, pretrains=("none",))
        numbers[name] = {"size_effect": {"estimate": e.estimate, "low": e.low, "high": e.high, "n_used": e.n_used,
                                         "n_left_out": e.n_left_out, "cells": e.cells.to_dict("records")},
                         "c1": cell_verdicts(recs, pretrains=("none",)).to_dict("records")}
    out.with_suffix(".json").write_text(json.dumps(numbers, indent=1, default=float))
    verdicts, effect = cell_verdicts(records, pretrains=("none",)), size_effect(records, pretrains=("none",))
    return summary(verdicts, effect)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="cpu")
    parser.add_argument("--report", action="store_true",
                        help="report the pilot on the records there are (bench/results/resolution_pilot.*)")
    args = parser.parse_args()
    if args.report:
        print(report(args.profile))
    else:
        specs = pilot_specs(args.profile)
        print(f"{len(specs)} fp32 runs at 224 px (the resolution pilot)", flush=True)
        print(run_grid(specs, args.profile).summary(), flush=True)
