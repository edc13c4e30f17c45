"""Every script a reader is told to run (``scripts/``, ``bench/``, ``rechecks/``) answers ``--help``
with its usage and exit status 0, doing nothing else: a script that parsed its arguments by hand
once took ``--help`` for a profile name and stopped with a traceback. Slow (each run imports
torch), so it runs in CI's second step."""

from __future__ import annotations

import subprocess
import sys

import pytest

from covid_lib.paths import REPO_ROOT

pytestmark = pytest.mark.slow

SCRIPTS = sorted(p.relative_to(REPO_ROOT).as_posix() for folder in ("scripts", "bench", "rechecks")
                 for p in (REPO_ROOT / folder).glob("*.py") if p.name not in ("shared.py", "__init__.py"))


def test_the_script_list_is_not_empty():
    assert "scripts/run_scale.py" in SCRIPTS and "rechecks/recheck_c1.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_answers_help(script):
    done = subprocess.run([sys.executable, script, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout.lower()
