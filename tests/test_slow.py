"""Slow end-to-end checks (``python -m pytest -m slow``; CI runs them as a separate step).

Each one runs a real command of the library on all of the relevant real data, so that what the
closing notes and the book claim is re-measured on every CI run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from covid_lib.paths import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.data]

RECORD = REPO_ROOT / "weights" / "unet_lungs.json"


def _run(*args: str, data_root) -> str:
    cmd = [sys.executable, "-m", "covid_lib", *args]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "COVID_LIB_DATA": str(data_root)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _mean_and_ci(text: str, label: str) -> tuple[float, float, float]:
    m = re.search(re.escape(label) + r"[^\n]*?(\d\.\d{4}) \[(\d\.\d{4}), (\d\.\d{4})\]", text)
    assert m, f"{label!r} not found in:\n{text}"
    return tuple(float(g) for g in m.groups())


def test_segment_eval_reaches_the_target_and_reproduces_the_record(data_root):
    """Issue 3: held-out Montgomery+Shenzhen mean Dice >= 0.95 with its interval, and cohen V7 Dice."""
    out = _run("segment", "eval", data_root=data_root)
    record = json.loads(RECORD.read_text())["evaluation"]
    mean, low, high = _mean_and_ci(out, "Dice (stored 256-px masks")
    assert mean >= 0.95 and low <= mean <= high
    assert mean == pytest.approx(record["held_out"]["dice"]["mean"], abs=2e-3)
    v7_mean, v7_low, v7_high = _mean_and_ci(out, "  Dice:")
    assert v7_low <= v7_mean <= v7_high
    assert v7_mean == pytest.approx(record["cohen_v7"]["dice"]["mean"], abs=5e-3)
    assert f"({record['held_out']['n_images']} images" in out


def test_every_composition_passes_the_leakage_audit_on_all_data(data_root):
    """Issue 2: splits shared by every composition, no patient or exact duplicate across splits."""
    from covid_lib.data import COMPOSITIONS

    out = _run("data", "audit", data_root=data_root)
    for name in [*COMPOSITIONS, "all sources"]:
        line = next((ln for ln in out.splitlines() if ln.startswith(f"{name}: ")), None)
        assert line is not None, f"no audit line for {name}:\n{out}"
        assert "patients in more than one split: 0;" in line and " 0 across splits;" in line, line
