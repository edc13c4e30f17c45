"""Run records: stable ids, clear errors, reuse; one smoke run on real data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from covid_lib import runs
from covid_lib.runs import RunSpec, run


@pytest.fixture(autouse=True)
def _tmp_results(tmp_path, monkeypatch):
    """Run records go to a temporary folder, never the repository's ``results/``."""
    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))


def spec(**kw) -> RunSpec:
    return RunSpec(**{"composition": "CORDA", "arch": "resnet18", "pretrain": "kermany", "profile": "smoke",
                      "data_version": "v1", **kw})


def test_run_id_is_stable_and_readable():
    assert spec().run_id == "covid-CORDA-resnet18-kermany-smoke-s0-03cba64ea2"
    assert spec(composition="CORDA&RSNA").run_id.startswith("covid-CORDA+RSNA-resnet18-")
    assert spec() == spec() and hash(spec()) == hash(spec())


@pytest.mark.parametrize("change", [dict(seed=1), dict(arch="conv8"), dict(pretrain=None), dict(profile="cpu"),
                                    dict(data_version="v2"), dict(pipeline="none"), dict(input_size=96),
                                    dict(epochs=3), dict(split_seed=1)])
def test_run_id_changes_with_every_setting(change):
    assert spec(**change).run_id != spec().run_id


def test_explicit_profile_defaults_give_the_same_id():
    assert spec(input_size=64, epochs=1).run_id == spec().run_id  # the smoke profile's own values


def test_pretrain_spec_and_resize():
    pre = spec().pretrain_spec()
    assert (pre.task, pre.composition, pre.pretrain, pre.arch) == ("pretrain", "kermany", None, "resnet18")
    assert spec(pretrain=None).pretrain_spec() is None
    assert spec(profile="paper").resize_size == 256 and spec(profile="cpu").resize_size == 144


@pytest.mark.parametrize("kw, message", [
    (dict(arch="vgg16"), "unknown architecture 'vgg16'; choose from resnet18"),
    (dict(composition="CORDA&NIH"), "unknown composition 'CORDA&NIH'; choose from CORDA"),
    (dict(pretrain="imagenet"), "pretrain must be None or one of"),
    (dict(task="pretrain", composition="CORDA", pretrain=None), "unknown pre-training source 'CORDA'"),
    (dict(pipeline="fancy"), "unknown pipeline 'fancy'"),
    (dict(profile="gpu"), "unknown profile 'gpu'"),
    (dict(task="segment"), "unknown task"),
])
def test_clear_errors(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        spec(**kw)


def test_finished_run_is_reused_not_retrained(monkeypatch):
    calls = []

    def fake_finetune(s, data_root, device, progress):
        calls.append(s.run_id)
        table = pd.DataFrame({"test_set": ["CORDA"], "threshold_rule": ["paper (0.5)"], "threshold": [0.5],
                              "n": [2], **{f"{m}{sfx}": [0.5] for m in ("sensitivity", "specificity", "f_score",
                                        "accuracy", "balanced_accuracy", "auc", "dor") for sfx in ("", "_low", "_high")}})
        return {"spec.json": {"run_id": s.run_id}, "history.csv": pd.DataFrame({"epoch": [1]}),
                "scores.csv": pd.DataFrame({"image_id": ["a"], "score": [0.4]}),
                "metrics.json": {"table": table.to_dict("records")}, "timings.json": {"total_s": 1.0}}

    monkeypatch.setattr(runs, "_finetune", fake_finetune)
    s = spec(pretrain=None)
    first = run(s, device="cpu")
    second = run(s, device="cpu")
    assert calls == [s.run_id] and not first.reused and second.reused
    assert (runs.results_dir() / s.run_id / "metrics.json").is_file()
    assert "AUC" in runs.summary_table(second).columns
    run(s, device="cpu", force=True)
    assert len(calls) == 2


def test_results_dir_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "elsewhere"))
    assert runs.results_dir() == tmp_path / "elsewhere"


@pytest.mark.data
def test_smoke_run_end_to_end(data_root, capsys):
    """Pre-train on Kermany, fine-tune on CORDA, score every test set, record, reuse (smoke)."""
    from covid_lib.cli import main

    s = RunSpec("CORDA", arch="resnet18", pretrain="kermany", profile="smoke")
    result = run(s, data_root=data_root, device="cpu", progress=False)
    path = result.path
    assert {"spec.json", "history.csv", "scores.csv", "val_scores.csv", "metrics.json", "timings.json"} <= \
        {p.name for p in path.iterdir()}
    assert path.parent == runs.results_dir() and result.checkpoint.is_file()
    record = json.loads((path / "spec.json").read_text())
    assert record["git"]["commit"] and record["data_version"] and record["pretrain_run"].startswith("pretrain-kermany")
    from covid_lib.data import COMPOSITIONS
    assert set(result.scores["test_set"]) == set(COMPOSITIONS)
    assert result.scores["score"].between(0, 1).all()
    assert set(result.metrics["threshold_rule"]) == {"paper (0.5)", "validation (youden)"}
    model, meta = runs.load_model(result.spec)
    assert meta["num_classes"] == 2 and meta["input_size"] == 64
    # the CLI reuses the finished run and prints the table with intervals
    assert main(["train", "--composition", "CORDA", "--arch", "resnet18", "--pretrain", "kermany",
                 "--profile", "smoke", "--device", "cpu", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "(reused)" in out and "Sensitivity" in out and "[" in out
