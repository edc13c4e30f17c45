"""Command line: ``python -m covid_lib GROUP COMMAND ...``.

The command line is the top layer: one small module per command group in this package
(``covid_lib.cli.data``, ``.segment``, ``.train``, ``.book``), each exposing
``register_cli(subparsers)`` and setting ``func`` on its parsers. Modules here import only the
standard library at their top; the work's heavy imports (numpy, pandas, torch...) happen inside
the command functions, so ``--help`` and argument errors return at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: One module per command group, in the order ``--help`` lists them; each defines register_cli(subparsers).
COMMAND_MODULES = (
    "covid_lib.cli.data",
    "covid_lib.cli.segment",
    "covid_lib.cli.train",
    "covid_lib.cli.book",
    "covid_lib.cli.grid",
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (importing each group's module, which must be light)."""
    parser = argparse.ArgumentParser(
        prog="python -m covid_lib",
        description="Hurdles: data, lung segmentation, training and the executed book "
                    "(Tartaglione et al. 2020 on public data).",
    )
    sub = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; user-facing errors print one line and return 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as err:  # user-facing errors: no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
