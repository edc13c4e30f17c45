"""``python -m covid_lib data ...`` (shim: the group's code still lives in ``covid_lib.data.cli``)."""

from __future__ import annotations


def register_cli(subparsers) -> None:
    """Add the ``data`` command group."""
    from covid_lib.data.cli import register_cli as _register

    _register(subparsers)
