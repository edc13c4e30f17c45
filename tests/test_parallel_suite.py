"""The default suite runs on two pytest-xdist workers (``pytest.ini``), each pinned to its own cores
(``conftest.pytest_configure``), so that torch in one worker does not oversubscribe the other's core."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import worker_cores

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("worker, count, cores, expected", [
    ("gw0", 2, [0, 1], [0]),
    ("gw1", 2, [1, 0], [1]),
    ("gw1", 2, [0, 1, 2, 3], [1, 3]),
    ("gw2", 3, [4, 5, 6, 7, 8, 9], [6, 9]),
    ("", 1, [0, 1], None),        # not under xdist
    ("gw0", 1, [0, 1], None),     # one worker keeps every core
    ("gw1", 2, [0], None),        # fewer cores than workers: no pinning
    ("master", 2, [0, 1], None),  # the controller process is not a worker
])
def test_worker_cores_splits_the_cores_between_workers(worker, count, cores, expected):
    assert worker_cores(worker, count, cores) == expected


def test_workers_of_one_session_get_disjoint_cores():
    got = [set(worker_cores(f"gw{i}", 3, list(range(8)))) for i in range(3)]
    assert set().union(*got) == set(range(8)) and sum(map(len, got)) == 8


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_this_worker_is_pinned_when_the_suite_runs_in_parallel():
    """Under xdist with at least as many cores as workers, this process holds its share only."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker is None or count < 2:
        pytest.skip("the suite is not running on several xdist workers (-n 0)")
    cores = os.cpu_count() or 1
    if cores < count:
        pytest.skip(f"{cores} cores for {count} workers: workers are not pinned")
    mine = os.sched_getaffinity(0)
    assert len(mine) <= -(-cores // count), f"worker {worker} may use {sorted(mine)} of {cores} cores"
    # a process this worker starts (a CLI test, a chapter's kernel) sizes torch's pool to its share
    proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                          capture_output=True, text=True, check=True)
    assert int(proc.stdout) <= len(mine)


def test_the_default_suite_runs_on_two_workers_by_file():
    """``-n 2 --dist loadfile``: a test file's module fixtures (the built book, the browser) are
    built once, in one worker."""
    ini = configparser.ConfigParser()
    ini.read(REPO_ROOT / "pytest.ini")
    addopts = ini["pytest"]["addopts"].split()
    assert addopts[addopts.index("-n") + 1] == "2" and addopts[addopts.index("--dist") + 1] == "loadfile"
    pins = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("pytest-xdist==") for line in pins)
