"""``python -m covid_lib train ...``: train (or reuse) one classifier run and print its metrics."""

from __future__ import annotations

import argparse

from covid_lib.names import ARCHS, COMPOSITION_NAMES, PRETRAIN_SOURCES

_PRETRAIN = ("none", *PRETRAIN_SOURCES)


def _cmd_train(args: argparse.Namespace) -> int:
    """Train one run (its pre-training first when needed) unless its record exists; print its metrics."""
    # lazy: imported when the command runs, so that --help stays light
    import pandas as pd

    from covid_lib.runs import RunSpec, run, summary_table

    spec = RunSpec(args.composition, arch=args.arch, pretrain=None if args.pretrain == "none" else args.pretrain,
                   profile=args.profile, seed=args.seed, input_size=args.input_size, epochs=args.epochs,
                   pipeline=args.pipeline, precision=args.precision)
    result = run(spec, data_root=args.data_root, device=args.device, force=args.force, storage=args.storage)
    state = "reused" if result.reused else f"trained in {result.timings['total_s']:.0f} s"
    print(f"run {result.run_id} ({state}); record: {result.path}")
    if result.did_not_learn:
        print(f"warning: did not learn (best {result.record['monitor']} {result.record['best_value']:.3f} < 0.6)")
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
        print(summary_table(result).to_string(index=False))
    return 0


def register_cli(subparsers) -> None:
    """Add ``python -m covid_lib train --composition CORDA --arch resnet18 --pretrain kermany ...``."""
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.profiles import PROFILES  # stdlib-only module: cheap

    p = subparsers.add_parser(
        "train", help="train (or reuse) one classifier run and print its metrics",
        description="Train one classifier run of Tartaglione et al. 2020 (its pre-training first when "
        "needed) unless its record under results/<run_id>/ exists, then print its metrics with intervals. "
        "Threads: the profile's, else every core of this machine.")
    p.add_argument("--composition", required=True, choices=COMPOSITION_NAMES, help="training composition of Table I")
    p.add_argument("--arch", default="resnet18", choices=ARCHS, help="classifier architecture")
    p.add_argument("--pretrain", default="none", choices=_PRETRAIN,
                   help="pre-training source: kermany (ChestXRay), nih (RSNA) or none (from scratch)")
    p.add_argument("--profile", default="cpu", choices=list(PROFILES), help="compute profile")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--input-size", type=int, default=None, help="network input side in pixels (default: the profile's)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs per stage (default: the profile's)")
    p.add_argument("--pipeline", default="paper", help="pre-processing pipeline (paper, none, equalize, crop, paper_crop)")
    p.add_argument("--precision", default=None, choices=("fp32", "bf16"),
                   help="training precision (default: the profile's; part of the run id when given)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--data-root", default=None, help="data root (default: $COVID_LIB_DATA or ../shared/data)")
    p.add_argument("--storage", default=None, help="checkpoint folder (default: the cache's runs folder)")
    p.add_argument("--force", action="store_true", help="retrain even if a record exists")
    p.set_defaults(func=_cmd_train)
