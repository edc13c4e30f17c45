"""Shared fixtures: the real data root (tests marked ``data`` skip without it) and a temp cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from covid_lib.paths import DataRootError, resolve_data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root (``COVID_LIB_DATA`` or ``../shared/data``); skips the test when absent."""
    try:
        return resolve_data_root()
    except DataRootError as err:
        pytest.skip(f"real data not available: {err}")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session writes its caches to a temporary folder, never the repo's ``.cache``."""
    cache = tmp_path_factory.getbasetemp() / "covid_lib_cache"
    monkeypatch.setenv("COVID_LIB_CACHE", str(cache))
    os.environ.setdefault("MPLBACKEND", "Agg")
