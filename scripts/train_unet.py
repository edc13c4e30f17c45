"""Reproduce ``weights/unet_lungs.pt`` (+ ``.json`` run record): the lung U-Net of the pre-processing.

Same as ``python -m covid_lib segment train ARGS``; this script avoids loading the other command
groups. Run from the repository root, e.g. (the committed weights)::

    nohup python scripts/train_unet.py --epochs 36 --image-size 128 --threads 2 \\
        --log weights/unet_lungs.log > /tmp/unet_train.out 2>&1 &
"""

from __future__ import annotations

import argparse
import sys

from covid_lib.cli import segment as segment_cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="scripts/train_unet.py")
    segment_cli.register_cli(parser.add_subparsers(dest="group", required=True))
    args = parser.parse_args(["segment", "train", *argv])
    args.command_line = "python scripts/train_unet.py " + " ".join(argv)
    return segment_cli._cmd_train(args)


if __name__ == "__main__":
    raise SystemExit(main())
