"""``python -m covid_lib segment ...`` (shim: the group's code still lives in ``covid_lib.segment``)."""

from __future__ import annotations


def register_cli(subparsers) -> None:
    """Add the ``segment`` command group."""
    from covid_lib.segment import register_cli as _register

    _register(subparsers)
