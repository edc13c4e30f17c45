"""``python -m covid_lib train ...`` (shim: the group's code still lives in ``covid_lib.runs``)."""

from __future__ import annotations


def register_cli(subparsers) -> None:
    """Add the ``train`` command group."""
    from covid_lib.runs import register_cli as _register

    _register(subparsers)
