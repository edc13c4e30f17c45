"""``python -m covid_lib book ...`` (shim: the group's code still lives in ``covid_lib.book``)."""

from __future__ import annotations


def register_cli(subparsers) -> None:
    """Add the ``book`` command group."""
    from covid_lib.book import register_cli as _register

    _register(subparsers)
