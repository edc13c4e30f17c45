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

Second arm, fixed on 2026-12-04 at 21:26 UTC (the commit that added ``--arm resnet18``), before any
of its twins was trained, under the same estimand, test and rule: ResNet-18 from scratch in
``table2_full`` (the model of C1, C2, C5 and C6), five compositions x seeds 0-2 (15 runs, no
pre-training needed). The arms are decided separately (``covid_lib.report.precision.ARMS``).
Found after it was fixed, before its new twins ran: three of its twins (CORDA&ChestXRay, seeds
0-2) are the ``precision`` grid's fp32 runs, the same specs, recorded on 2026-12-02, before records
named their machine; they count as the arm's, and the report names each twin's machine where
recorded.

Third arm, fixed on 2026-12-04 at 21:33 UTC before any of its twins was trained, same estimand,
test and rule: ResNet-50 pre-trained on RSNA (nih) in ``table3_full``, seed 0 (the pre-training on
the 1,000 NIH images and its 5 fine-tunes: 5 pairs). ResNet-50 is the architecture of the 18 runs
``table3_full`` misses; its whole-set pre-trainings take 1-2 hours each in bf16, too long to twin here.

Fourth arm, fixed on 2026-12-05 at 00:07 UTC before any of its twins was trained, same estimand,
test and rule: ResNet-50 pre-trained on the 563 ChestXRay images (``kermany``) in ``table3``, seed 0
(the pre-training and its 5 fine-tunes). The third arm left 3 of its 5 pairs out because the twins
collapsed; this arm asks the same of a second ResNet-50 pre-training, the only other one whose twin
fits in a session here (about 20 minutes of pre-training in fp32, against 2.5 hours for the whole
set). Its bf16 records predate records naming their machine, and its CORDA record collapsed, so at
most 4 of its pairs can be used. It is decided on its own; the two ResNet-50 arms are not pooled.

Fifth arm, fixed on 2026-12-05 at 06:30 UTC before any of its twins was trained, same estimand,
test and rule: the 18 runs ``table3_full`` still misses in bf16 (ResNet-50 pre-trained on RSNA,
seeds 1 and 2; on the whole ChestXRay set, seed 2). Its pairs form only as their bf16 records land
(on a CPU with native bf16 or CUDA). Until then its twins serve the twin-completed reading of C3,
fixed in the same commit (``covid_lib/report/twin_fill.py``): C3 at the whole-set scale with each
missing run replaced by its twin, beside the verdict, deciding nothing. ``--report --arm
resnet50_missing`` also writes that reading to ``bench/results/twin_completed_c3.{md,json}``. Its
twins run group by group: the two RSNA pre-trainings (about 20 minutes each in fp32 here) with
their fine-tunes first, then the whole-set pre-training (about 2.5 hours, resumed epoch by epoch
across sessions) with its fine-tunes.

    nohup python scripts/run_precision_control.py > precision.log 2>&1 &            # Conv8
    nohup python scripts/run_precision_control.py --arm resnet18 > precision.log 2>&1 &
    nohup python scripts/run_precision_control.py --arm resnet50 > precision.log 2>&1 &
    nohup python scripts/run_precision_control.py --arm resnet50_563 > precision.log 2>&1 &
    nohup python scripts/run_precision_control.py --arm resnet50_missing > precision.log 2>&1 &
    python scripts/run_precision_control.py --report [--arm resnet18]   # the decision, into bench/results/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from covid_lib.grid import run_grid

#: Where ``--report`` writes an arm's control: ``<REPORTS>/precision_control_<arm>.{md,json}``.
REPORTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def ordered_twins(arm: str = "conv8", profile: str = "cpu") -> list:
    """The fp32 twins of an arm's runs (:func:`covid_lib.report.precision.twin_specs`), seed by seed
    (a stopped run leaves whole seeds), fine-tunes from scratch first in each, then each pre-training
    right before its fine-tunes; an arm of (pre-training, seed) ``groups`` runs group by group in the
    order given (the cheap RSNA pre-trainings before the whole-set one)."""
    from covid_lib.report.precision import ARMS, twin_specs

    chosen = ARMS[arm]
    if chosen.groups:
        return sorted(twin_specs(arm, profile),
                      key=lambda s: (chosen.groups.index(chosen.group_of(s)), s.task != "pretrain"))
    return sorted(twin_specs(arm, profile),
                  key=lambda s: (s.seed, s.task == "pretrain" or s.pretrain is not None, s.task != "pretrain"))


def twin_machines(records) -> str:
    """The CPUs the twins were trained on, from their records' ``timings.json``."""
    seen = set()
    for path in records.loc[records["precision"] == "fp32", "path"].dropna():
        machine = json.loads((Path(path) / "timings.json").read_text()).get("runtime", {}).get("machine", {})
        if not machine.get("cpu_id"):
            seen.add("a machine not recorded (records before 2026-12-03)")
            continue
        flags = [f for f in ("avx512_bf16", "amx_bf16") if machine.get(f)]
        seen.add(f"{machine.get('cpu', '?')} ({machine.get('cpu_id', '?')}; native bf16: "
                 f"{', '.join(flags) if flags else 'none'})")
    return "; ".join(sorted(seen)) or "no twin recorded yet"


def _kept(control) -> dict:
    """The post-hoc reading with the models collapsed at the threshold only kept, for the JSON."""
    e = control.estimate
    return {"outcome": control.outcome, "reason": control.reason, "estimate": e.estimate, "low": e.low,
            "high": e.high, "mde": control.mde, "n_used": e.n_used, "n_left_out": e.n_left_out}


def report(arm: str = "conv8", profile: str = "cpu") -> str:
    """Decide an arm on the records there are; write its markdown and JSON under :data:`REPORTS`."""
    from covid_lib.analysis.precision import estimate_precision
    from covid_lib.report.precision import precision_markdown, precision_records, threshold_kept

    records = precision_records(arm, profile)
    control, kept = estimate_precision(records), threshold_kept(records)
    out = REPORTS / f"precision_control_{arm}"
    out.with_suffix(".md").write_text(precision_markdown(control, arm=arm, machine=twin_machines(records),
                                                          records=records, kept=kept))
    e = control.estimate
    out.with_suffix(".json").write_text(json.dumps({
        "arm": arm, "outcome": control.outcome, "reason": control.reason, "estimate": e.estimate, "low": e.low,
        "high": e.high, "mde": control.mde, "n_used": e.n_used, "n_left_out": e.n_left_out,
        "n_patients": e.n_patients, "noise": control.noise.to_dict("records"),
        "statuses": control.statuses.to_dict(), "pairs": e.cells.to_dict("records"),
        "left_out": e.left_out.to_dict("records"),
        "post_hoc_threshold_collapsed_kept": _kept(kept)}, indent=1, default=float))
    if arm == "resnet50_missing":
        return control.summary() + "\n" + report_twin_completed(profile)
    return control.summary()


def report_twin_completed(profile: str = "cpu") -> str:
    """The twin-completed reading of C3 (:mod:`covid_lib.report.twin_fill`), written to
    ``bench/results/twin_completed_c3.{md,json}``; returns its one-line summary."""
    from covid_lib.report.twin_fill import twin_completed_c3, twin_completed_markdown

    reading = twin_completed_c3(profile)
    out = REPORTS / "twin_completed_c3"
    out.with_suffix(".md").write_text(twin_completed_markdown(reading))
    out.with_suffix(".json").write_text(json.dumps(reading, indent=1, default=float))
    t, b = reading["twin_completed"], reading["bf16"]
    return (f"C3, whole set, twin-completed ({len(reading['filled'])} runs filled): {t['outcome']} "
            f"{t['estimate']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}], {t['n_used']} used; "
            f"bf16 records alone: {b['outcome']} {b['estimate']:+.3f} [{b['low']:+.3f}, {b['high']:+.3f}], {b['n_used']} used")


if __name__ == "__main__":
    from covid_lib.report.precision import ARMS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="cpu")
    parser.add_argument("--arm", choices=sorted(ARMS), default="conv8", help="which arm (default conv8)")
    parser.add_argument("--report", action="store_true",
                        help="decide the arm on the records there are and write bench/results/precision_control_ARM.*")
    args = parser.parse_args()
    if args.report:
        print(report(args.arm, args.profile))
    else:
        specs = ordered_twins(args.arm, args.profile)
        print(f"{len(specs)} fp32 twins ({args.arm}: {ARMS[args.arm].description})", flush=True)
        print(run_grid(specs, args.profile).summary(), flush=True)
