"""Run the grids at the paper's pre-training scale (issue 17) in the order the verdicts need them.

Table II at five seeds first, seed-major (every cell of seed 0, then of seed 1, ...: a stopped run
leaves whole tables of the first seeds), each pre-training right before its first fine-tune; then
Conv8, the ablation, Table III and the resolution check. ``--pretrain-only`` runs only the
pre-trainings (ResNet-18 on the whole ChestXRay set for seeds 0-2, Conv8, the remaining ResNet-18
seeds and their RSNA pre-trainings, then ResNet-50). Every run is the same RunSpec as in its named grid
(``grid status table2_full`` counts it); finished runs are skipped, so it resumes where it stopped.

    nohup python scripts/run_scale.py > scale.log 2>&1 &           # everything
    nohup python scripts/run_scale.py --pretrain-only > scale.log 2>&1 &
"""

from __future__ import annotations

import argparse

from covid_lib.grid import grid_specs, run_grid

FINETUNE_GRIDS = ("table2_full", "conv8_full", "ablation_full", "table3_full", "resolution")


def ordered_specs(profile: str = "cpu", *, pretrain_only: bool = False) -> list:
    """Every run of :data:`FINETUNE_GRIDS` (and ``pretrain_full``), pre-trainings first."""
    grids = {name: grid_specs(name, profile) for name in ("pretrain_full", *FINETUNE_GRIDS)}
    every = [s for name in FINETUNE_GRIDS for s in grids[name]]  # pretrain_full's runs are their parents
    pre = [s for s in every if s.task == "pretrain"]

    def key(s):  # ResNet-18 seeds 0-2, Conv8, ResNet-18 seeds 3-4, RSNA, ResNet-50; the chain first; 128 px before 224
        arch = {"resnet18": 0, "conv8": 1, "resnet50": 3}[s.arch]
        if s.arch == "resnet18" and s.seed > 2:
            arch = 2
        return (s.input_size != 128, s.pipeline != "paper", arch, s.composition != "kermany_full", s.seed)

    first = sorted(pre, key=key) if pretrain_only else []
    out, seen = [], set()
    for s in first + ([] if pretrain_only else every):
        if s.run_id not in seen:
            seen.add(s.run_id)
            out.append(s)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="cpu")
    parser.add_argument("--pretrain-only", action="store_true", help="only the pre-trainings")
    parser.add_argument("--fp32-twins", action="store_true",
                        help="on a CPU without native bf16, train the fp32 twins (other run ids) of the bf16 runs")
    args = parser.parse_args()
    specs = ordered_specs(args.profile, pretrain_only=args.pretrain_only)
    print(f"{len(specs)} runs in order", flush=True)
    try:
        report = run_grid(specs, args.profile, fp32_twins=args.fp32_twins)
    except ValueError as err:  # e.g. a bf16 grid on a CPU without bf16: say why, no traceback
        raise SystemExit(f"run_scale: {err}") from None
    print(report.summary(), flush=True)
