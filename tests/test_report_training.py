"""Training tables read from run records (synthetic records in a temporary folder)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from covid_lib.report import training as rt
from covid_lib import stats
from covid_lib.runs import RESULTS_ENV_VAR, RunArtifacts, RunSpec, write_artifacts


def run_spec(spec: dict) -> RunSpec:
    """The :class:`RunSpec` of a dict of its fields (the synthetic records' data version is ``test``)."""
    return RunSpec(data_version="test", **spec)


def write_record(root, spec: dict, scores, *, did_not_learn=False, auc=0.7) -> str:
    """Write the record of run ``spec`` (:class:`RunSpec` fields) under ``root`` with the runs package's
    writer (:func:`covid_lib.runs.write_artifacts`); returns its run id."""
    run = run_spec(spec)
    table = [{"test_set": "CORDA", "threshold_rule": "paper (0.5)", "auc": auc, "auc_low": auc - 0.1,
              "auc_high": auc + 0.1}]
    files = {"spec.json": {"run_id": run.run_id, **run.identity(), "did_not_learn": did_not_learn},
             "scores.csv": scores, "history.csv": pd.DataFrame({"epoch": [1], "val_auc": [0.5]}),
             "timings.json": {"train_images_per_s": 100.0, "total_s": 60.0},
             "metrics.json": {"did_not_learn": did_not_learn, "best_value": 0.5, "best_epoch": 3, "table": table}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RESULTS_ENV_VAR, str(root))
        write_artifacts(RunArtifacts(run, files, checkpoint=b""))
    return run.run_id


@pytest.fixture
def records(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    y = np.tile([0, 1], n // 2)
    base = pd.DataFrame({"test_set": "CORDA", "source": "cohen", "image_id": [f"i{i}" for i in range(n)],
                         "group_id": [f"p{i // 2}" for i in range(n)], "label": y})
    spec = dict(task="covid", composition="CORDA", arch="resnet18", profile="cpu", seed=0, pipeline="paper",
                precision=None)
    good = base.assign(score=np.clip(y * 0.4 + rng.uniform(0, 0.6, n), 0, 1))
    weak = base.assign(score=rng.uniform(0, 1, n))
    ids = {"pre": write_record(tmp_path, {**spec, "pretrain": "kermany"}, good),
           "scratch": write_record(tmp_path, {**spec, "pretrain": None}, weak, did_not_learn=True)}
    for p in ("fp32", "bf16"):
        for s in range(2):
            ids[f"{p}{s}"] = write_record(tmp_path, {**spec, "pretrain": None, "precision": p, "seed": s}, weak,
                                          auc=0.6 + 0.01 * s)
    return tmp_path, good, weak, ids


def test_pretraining_gain_is_paired_and_clustered(records):
    root, good, weak, _ = records
    index = rt.record_index(root)
    gain = rt.pretraining_gain(index, n_boot=300)
    assert gain["auc_pretrained"] == pytest.approx(roc_auc_score(good["label"], good["score"]))
    assert gain["auc_scratch"] == pytest.approx(roc_auc_score(weak["label"], weak["score"]))
    assert gain["n_patients"] == 20 and gain["scratch_did_not_learn"] is True
    low, high = gain["difference_cluster_ci"]
    assert low < gain["difference"] < high and 0 <= gain["delong_p"] <= 1
    g, w = (x.sort_values(["source", "image_id"]) for x in (good, weak))  # the records' joined order
    boot = stats.paired_cluster_bootstrap(g["label"], g["score"], w["score"], g["group_id"], n_boot=300)
    assert (low, high, gain["cluster_p"]) == (boot.low, boot.high, boot.p_value)


def test_precision_table_and_missing_records(records):
    root, _, weak, _ = records
    spec = dict(task="covid", composition="CORDA", arch="conv8", profile="cpu", seed=0, pipeline="paper",
                pretrain=None, precision="fp32")  # an fp32 twin of another architecture: not the grid's
    write_record(root, spec, weak, auc=0.9)
    table = rt.precision_table(rt.record_index(root))
    assert table["precision"].tolist() == ["bf16", "bf16", "fp32", "fp32"]
    assert table["test AUC"].tolist() == pytest.approx([0.6, 0.61, 0.6, 0.61])
    assert rt.pretraining_gain(rt.record_index(root), composition="COVID-ChestXRay") is None
    assert rt.markdown(pd.DataFrame()).startswith("_No records")
    assert rt.record_index(root / "none").empty


def test_record_index_reads_covid_lib_results_by_default(records, monkeypatch):
    """Chapters that pass no folder read ``$COVID_LIB_RESULTS`` (the chapters' ``results``), like every reader."""
    root, *_, ids = records
    monkeypatch.setenv(RESULTS_ENV_VAR, str(root))
    index = rt.record_index()
    assert set(index["run_id"]) == set(ids.values()) and len(ids) == 6
    assert index.set_index("run_id").loc[ids["scratch"], "status"] == "did not learn"
    assert rt.run_row(index, task="covid", pretrain="kermany")["run_id"] == ids["pre"]
    monkeypatch.setenv(RESULTS_ENV_VAR, str(root / "none"))
    assert rt.record_index().empty


def test_run_row_takes_the_profiles_input_size_unless_asked(records):
    """The resolution grid's 224-px run shares every other field with its 128-px twin: a lookup by
    profile gets the profile's size, and the tables say which size each record has."""
    root, good, weak, ids = records
    spec = dict(task="covid", composition="CORDA", arch="resnet18", profile="cpu", seed=0, pipeline="paper",
                precision=None, pretrain="kermany")
    big = write_record(root, {**spec, "input_size": 224}, weak)
    index = rt.record_index(root)
    assert sorted(index["input_size"].unique()) == [128, 224]
    assert rt.run_row(index, **spec)["run_id"] == ids["pre"]
    assert rt.run_row(index, **spec, input_size=224)["run_id"] == big
    assert rt.pretraining_gain(index, n_boot=50)["pretrained"] == ids["pre"]


def test_pretraining_table_names_arch_pipeline_and_input_size(tmp_path):
    y = np.tile([0, 1], 10)
    scores = pd.DataFrame({"test_set": "kermany", "source": "kermany", "image_id": [f"i{i}" for i in range(20)],
                           "group_id": [f"p{i}" for i in range(20)], "label": y, "score": y * 0.5 + 0.2})
    for size in (None, 224):
        run = run_spec(dict(task="pretrain", composition="kermany_full", arch="resnet18", profile="cpu",
                            input_size=size))
        files = {"spec.json": {"run_id": run.run_id, **run.identity(), "did_not_learn": False},
                 "scores.csv": scores, "history.csv": pd.DataFrame({"epoch": [1, 2], "val_auc": [0.7, 0.8]}),
                 "timings.json": {"train_images_per_s": 50.0, "total_s": 120.0},
                 "metrics.json": {"did_not_learn": False, "best_value": 0.8, "best_epoch": 2, "num_classes": 3,
                                  "splits": {s: {"n_used": 10} for s in ("train", "val", "test")}}}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(RESULTS_ENV_VAR, str(tmp_path))
            write_artifacts(RunArtifacts(run, files, checkpoint=b""))
    table = rt.pretraining_table(rt.record_index(tmp_path))
    assert sorted(table["model"]) == ["resnet18, pipeline paper, 128 px", "resnet18, pipeline paper, 224 px"]
    assert set(table["source (task)"]) == {"kermany full (3 classes, macro AUC)"}
