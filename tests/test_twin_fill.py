"""The twin-completed reading of C3 (:mod:`covid_lib.report.twin_fill`): missing bf16 runs replaced
by their fp32 twins' records, and nothing else touched."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from covid_lib.report.records import RECORD_COLUMNS
from covid_lib.report.twin_fill import fill_missing_with_twins


def _row(run_id: str, status: str, seed: int) -> dict:
    return {"arch": "resnet50", "pretrain": "nih", "composition": "CORDA", "seed": seed, "pipeline": "paper",
            "precision": "bf16", "run_id": run_id, "status": status,
            "path": f"/r/{run_id}" if status != "missing" else None}


def test_only_missing_runs_with_a_twin_are_filled_and_a_twin_keeps_its_own_status():
    records = pd.DataFrame([_row("a-s0", "done", 0), _row("a-s1", "missing", 1), _row("a-s2", "missing", 2),
                            _row("a-s3", "missing", 3)], columns=RECORD_COLUMNS)
    twins = {"a-s0": SimpleNamespace(run_id="t-s0", status="done", path="/r/t-s0"),  # a record: never replaced
             "a-s1": SimpleNamespace(run_id="t-s1", status="done", path="/r/t-s1"),
             "a-s2": SimpleNamespace(run_id="t-s2", status="collapsed", path="/r/t-s2")}
    out = fill_missing_with_twins(records, twins).set_index("seed")
    assert out.loc[0, ["run_id", "precision", "path"]].tolist() == ["a-s0", "bf16", "/r/a-s0"]
    assert out.loc[0, "twin_of"] is None
    assert out.loc[1, ["run_id", "status", "precision", "path", "twin_of"]].tolist() == [
        "t-s1", "done", "fp32", "/r/t-s1", "a-s1"]
    assert out.loc[2, ["status", "twin_of"]].tolist() == ["collapsed", "a-s2"]  # left out, as a record would be
    assert out.loc[3, ["run_id", "status"]].tolist() == ["a-s3", "missing"]  # no twin: stays missing
    assert records["precision"].eq("bf16").all()  # the input is not changed


@pytest.mark.data
def test_the_bf16_reading_is_c3s_verdict_and_twins_only_replace_missing_comparisons(data_root):
    """The bf16 reading is C3's whole-set entry in verdicts.json; the twin-completed one makes as many
    comparisons, with no more left out as missing (the same numbers while no twin of a missing run
    is recorded)."""
    from pathlib import Path

    from covid_lib.report.twin_fill import twin_completed_c3

    reading = twin_completed_c3(data_root=data_root)
    verdict = json.loads((Path(__file__).parents[1] / "book" / "verdicts.json").read_text())
    c3 = verdict["scales"]["full"]["claims"]["C3"]
    bf16, filled = reading["bf16"], reading["twin_completed"]
    for key in ("outcome", "estimate", "low", "high", "n_used", "n_left_out"):
        assert bf16[key] == pytest.approx(c3[key])
    assert bf16["n_used"] + bf16["n_left_out"] == filled["n_used"] + filled["n_left_out"]
    assert filled["left_out_reasons"].get("missing", 0) <= bf16["left_out_reasons"].get("missing", 0)
    assert reading["missing"] == bf16["left_out_reasons"].get("missing", 0)  # one comparison per missing run
    assert len(reading["filled"]) == reading["missing"] - filled["left_out_reasons"].get("missing", 0)
    if not reading["filled"]:
        assert {k: filled[k] for k in ("estimate", "n_used")} == {k: bf16[k] for k in ("estimate", "n_used")}
