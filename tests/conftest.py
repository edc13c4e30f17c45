"""Shared fixtures: the real data root (tests marked ``data`` skip without it) and a temp cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from covid_lib.paths import DataRootError, resolve_data_root


def worker_cores(worker: str, count: int, cores: list[int]) -> list[int] | None:
    """The cores pytest-xdist worker ``worker`` ("gw0", "gw1", ...) of ``count`` gets: every
    ``count``-th of ``cores`` from its own index on; None (keep all) outside xdist, with one worker,
    or with fewer cores than workers."""
    if not worker.startswith("gw") or count < 2 or len(cores) < count:
        return None
    return sorted(cores)[int(worker[2:]) % count::count]


def pytest_configure(config) -> None:
    """Under pytest-xdist (``pytest.ini``: ``-n 2``), pin each worker to its own share of the cores.

    Torch, and every subprocess a test starts, sizes its thread pool from the cores this process may
    use (:func:`covid_lib.train.runtime.available_cores`). Unpinned, two workers on two cores each
    start two threads, and the training tests run several times slower than alone.
    """
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = worker_cores(os.environ.get("PYTEST_XDIST_WORKER", ""),
                         int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), list(os.sched_getaffinity(0)))
    if cores is not None:
        os.sched_setaffinity(0, cores)


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


@pytest.fixture
def write_record(tmp_path, monkeypatch):
    """Write a run's record the way a run does (:class:`covid_lib.runs.RunArtifacts` through
    :func:`covid_lib.runs.write_artifacts`), under a temporary ``$COVID_LIB_RESULTS``; tests build
    records with it instead of writing the record's files by hand.

    ``write_record(spec, scores, *, did_not_learn=False, history=None, timings=None, **metrics)``
    returns the record's folder; ``metrics`` are extra ``metrics.json`` entries (``table``, ...).
    """
    import time

    import pandas as pd

    from covid_lib.runs import RESULTS_ENV_VAR, RunArtifacts, write_artifacts

    results = tmp_path / "results"
    monkeypatch.setenv(RESULTS_ENV_VAR, str(results))

    def write(spec, scores, *, did_not_learn=False, history=None, timings=None, **metrics):
        best = metrics.setdefault("best_value", 0.5 if did_not_learn else 0.8)
        metrics.setdefault("monitor", "val_auc")
        files = {
            "spec.json": {"run_id": spec.run_id, **spec.identity(), "did_not_learn": did_not_learn,
                          "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.gmtime())},
            "history.csv": history if history is not None else pd.DataFrame({"epoch": [1], "val_auc": [best]}),
            "scores.csv": scores,
            "timings.json": timings if timings is not None else {"total_s": 1.0},
            "metrics.json": {"did_not_learn": did_not_learn, "table": [], **metrics},
        }
        return write_artifacts(RunArtifacts(spec, files, checkpoint=b""), storage=tmp_path / "checkpoints")

    write.results = results
    return write
