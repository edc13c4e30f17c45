"""Command line: ``python -m covid_lib GROUP COMMAND ...``.

The command line is the top layer: one small module per command group in this package
(``covid_lib.cli.data``, ``.segment``, ``.train``, ``.book``, ``.grid``, ``.audit``), each exposing
``register_cli(subparsers)`` and setting ``func`` on its parsers. Modules here import only the
standard library at their top; the work's heavy imports (numpy, pandas, torch...) happen inside
the command functions, so ``--help`` and argument errors return at once.

:func:`main` handles what every command shares: a ``--device`` is checked before the command runs
(``auto``, ``cpu``, ``cuda`` or ``cuda:N``; one line otherwise), user-facing errors print one line,
and a reader that stops early (``python -m covid_lib grid list | head -1``) ends the command
quietly instead of with a ``BrokenPipeError`` traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: One module per command group, in the order ``--help`` lists them; each defines register_cli(subparsers).
COMMAND_MODULES = (
    "covid_lib.cli.data",
    "covid_lib.cli.segment",
    "covid_lib.cli.train",
    "covid_lib.cli.book",
    "covid_lib.cli.grid",
    "covid_lib.cli.audit",
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
    """Parse ``argv`` and run the command; user-facing errors print one line and return 2; a
    closed output pipe (``| head``) returns 0 without a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            if getattr(args, "device", None) is not None:
                # lazy: `import covid_lib.cli` stays standard-library only
                from covid_lib.profiles import check_device

                check_device(args.device)
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
            return code
        except (FileNotFoundError, ValueError, KeyError) as err:  # user-facing errors: no traceback
            print(f"error: {err}", file=sys.stderr)
            return 2
    except BrokenPipeError:
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush into the closed pipe is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (captured in tests)
        pass


if __name__ == "__main__":
    raise SystemExit(main())
