"""``python -m covid_lib segment train|eval``: the lung U-Net of the pre-processing (Sec. III-B).

Only the standard library is imported here; numpy, pandas, torch and :mod:`covid_lib.segment`
are imported inside the command functions.
"""

from __future__ import annotations

import argparse
import sys

#: Defaults of ``segment train``: those of :class:`covid_lib.segment.TrainConfig` (a test checks).
TRAIN_DEFAULTS: dict[str, int | float] = {
    "image_size": 128, "base_channels": 16, "depth": 4, "epochs": 30, "batch_size": 16,
    "seed": 0, "threads": 2, "lr": 1e-3, "test_fraction": 0.2, "val_fraction": 0.15,
}
_TRAIN_HELP = {
    "image_size": "U-Net input side in px (images are equalised and resized to it)",
    "base_channels": "channels of the U-Net's first level (doubled at each level)",
    "depth": "number of 2x downsamplings of the U-Net",
    "epochs": "training epochs (the best validation-Dice epoch is kept)",
    "batch_size": "training batch size",
    "seed": "seed of the patient split, the initialisation and the augmentation",
    "threads": "CPU threads for torch",
    "lr": "Adam learning rate (cosine decay to lr/100)",
    "test_fraction": "share of each source's patients held out for evaluation",
    "val_fraction": "share of the remaining patients used for checkpoint selection",
}
_WEIGHTS = "weights/unet_lungs.pt"


def _cmd_train(args: argparse.Namespace) -> int:
    """Train the U-Net, evaluate it, save the weights and the run record."""
    # lazy: imported when the command runs, so that --help stays light
    from covid_lib.paths import cache_dir
    from covid_lib.profiles import resolve_device
    from covid_lib.segment import TrainConfig, train

    cfg = TrainConfig(**{name: getattr(args, name) for name in TRAIN_DEFAULTS},
                      device=resolve_device(args.device))
    command = getattr(args, "command_line", None)
    if command is None and sys.argv[1:3] == ["segment", "train"]:
        command = "python -m covid_lib segment train " + " ".join(sys.argv[3:])
    out = args.out or cache_dir("segment") / "unet_lungs.pt"
    train(cfg, data_root=args.data_root, out=out, log_path=args.log, command=command)
    print(f"wrote {out} and its record; --out {_WEIGHTS} replaces the committed weights")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """Score committed (or given) weights on held-out patients and on the V7 masks."""
    # lazy: imported when the command runs, so that --help stays light
    import pandas as pd
    import torch

    from covid_lib.models.weights import load_unet
    from covid_lib.profiles import resolve_device
    from covid_lib.segment import evaluate, format_report

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load_unet(args.weights, device=device)
    split = model.meta.get("split") if getattr(model, "meta", None) else None
    result, held, cohen = evaluate(model, args.data_root, split=split, device=device)
    print(format_report(result))
    if args.scores:
        pd.concat([held.assign(set="held_out"), cohen.assign(set="cohen_v7")]).to_csv(args.scores, index=False)
    return 0


def register_cli(subparsers) -> None:
    """Add the ``segment`` group (``train``, ``eval``) to the ``python -m covid_lib`` parser."""
    group = subparsers.add_parser("segment", help="lung segmentation U-Net: train and evaluate")
    sub = group.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the U-Net on Montgomery + Shenzhen and save weights + run record")
    for name, default in TRAIN_DEFAULTS.items():
        tr.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                        help=f"{_TRAIN_HELP[name]} (default: %(default)s)")
    tr.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    tr.add_argument("--data-root", default=None, help="data root (default: $COVID_LIB_DATA, else ../shared/data)")
    tr.add_argument("--out", default=None,
                    help=f"weights path (default: the cache's segment/unet_lungs.pt, so the committed {_WEIGHTS} "
                    f"stays; pass --out {_WEIGHTS} to replace it); the run record goes beside it (.json)")
    tr.add_argument("--log", default=None, help="append per-epoch JSON lines to this file")
    tr.set_defaults(func=_cmd_train)
    ev = sub.add_parser("eval", help="Dice/IoU on held-out Montgomery+Shenzhen and on Cohen V7 masks")
    ev.add_argument("--weights", default=None, help=f"U-Net checkpoint (default: {_WEIGHTS})")
    ev.add_argument("--data-root", default=None, help="data root (default: $COVID_LIB_DATA, else ../shared/data)")
    ev.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    ev.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default: %(default)s)")
    ev.add_argument("--scores", default=None, help="write per-image scores to this CSV")
    ev.set_defaults(func=_cmd_eval)
