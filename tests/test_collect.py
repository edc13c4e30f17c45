"""``grid collect``: finished records from a grid's work tree join this checkout's, never overwriting one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from covid_lib.cli import main
from covid_lib.runs.collect import collect_records


def _record(root: Path, run_id: str, *, finished: bool = True, auc: float = 0.8) -> Path:
    path = root / run_id
    path.mkdir(parents=True)
    (path / "spec.json").write_text(json.dumps({"run_id": run_id}))
    (path / "scores.csv").write_text("image_id,score\na,0.1\n")
    if finished:  # metrics.json is written last: its presence marks the record complete
        (path / "metrics.json").write_text(json.dumps({"auc": auc}))
    return path


@pytest.fixture
def trees(tmp_path):
    src, here = tmp_path / "worktree" / "results", tmp_path / "main" / "results"
    _record(src, "covid-new-s0")
    _record(src, "covid-running-s1", finished=False)
    _record(src, "covid-same-s0")
    _record(here, "covid-same-s0")
    _record(src, "covid-other-s0", auc=0.9)
    _record(here, "covid-other-s0", auc=0.7)
    (src / "claims").mkdir()  # an analysis folder, not a run record
    (src / "claims" / "c4-full.csv").write_text("x\n")
    return src, here


def test_copies_complete_new_records_and_leaves_existing_ones_alone(trees):
    src, here = trees
    before = (here / "covid-other-s0" / "metrics.json").read_text()
    report = collect_records(src.parent, here)  # a checkout: its results/ is read
    assert report.copied == ["covid-new-s0"]
    assert report.same == ["covid-same-s0"]
    assert report.conflicts == ["covid-other-s0"]
    assert report.incomplete == ["covid-running-s1"]
    assert sorted(p.name for p in (here / "covid-new-s0").iterdir()) == ["metrics.json", "scores.csv", "spec.json"]
    assert (here / "covid-other-s0" / "metrics.json").read_text() == before
    assert not (here / "covid-running-s1").exists() and not (here / "claims").exists()
    assert not list(here.glob(".*tmp"))
    again = collect_records(src, here)
    assert again.copied == [] and sorted(again.same) == ["covid-new-s0", "covid-same-s0"]


def test_dry_run_copies_nothing(trees):
    src, here = trees
    report = collect_records(src, here, dry_run=True)
    assert report.copied == ["covid-new-s0"] and not (here / "covid-new-s0").exists()
    assert report.summary(dry_run=True).startswith("would copy 1,")


def test_refuses_its_own_folder_and_a_missing_one(tmp_path):
    with pytest.raises(ValueError, match="nothing to collect"):
        collect_records(tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match="no records folder"):
        collect_records(tmp_path / "absent", tmp_path)


def test_command_exits_1_on_a_conflict_and_names_it(trees, monkeypatch, capsys):
    src, here = trees
    monkeypatch.setenv("COVID_LIB_RESULTS", str(here))
    assert main(["grid", "collect", str(src)]) == 1
    out = capsys.readouterr().out
    assert "copied covid-new-s0" in out and "left alone: covid-other-s0" in out and "book sync" in out
    (here / "covid-other-s0" / "metrics.json").write_text(json.dumps({"auc": 0.9}))
    assert main(["grid", "collect", str(src)]) == 0
    with pytest.raises(SystemExit, match="grid collect: no records folder"):
        main(["grid", "collect", str(src / "absent")])
