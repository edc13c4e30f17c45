"""Command line: ``python -m covid_lib GROUP COMMAND ...``.

Each group lives in the module that does the work; that module exposes
``register_cli(subparsers)`` and sets ``func`` on its parsers.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# One module per command group; each defines register_cli(subparsers).
_COMMAND_MODULES = (
    "covid_lib.data.cli",
    "covid_lib.segment",
    "covid_lib.book",
    "covid_lib.runs",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m covid_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="group", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as err:  # user-facing errors: no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
