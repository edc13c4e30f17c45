"""Run records: stable ids, clear errors, reuse; smoke runs on real data (record contents, determinism)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

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
    assert spec().run_id == "covid-CORDA-resnet18-kermany-smoke-s0-b7a13b2762"
    assert spec(composition="CORDA&RSNA").run_id.startswith("covid-CORDA+RSNA-resnet18-")
    assert spec() == spec() and hash(spec()) == hash(spec())


@pytest.mark.parametrize("change", [dict(seed=1), dict(arch="conv8"), dict(pretrain=None), dict(profile="cpu"),
                                    dict(data_version="v2"), dict(pipeline="none"), dict(input_size=96),
                                    dict(epochs=3), dict(split_seed=1)])
def test_run_id_changes_with_every_setting(change):
    assert spec(**change).run_id != spec().run_id


def test_precision_is_hashed_only_when_set():
    cpu = dict(profile="cpu")  # asks for bf16 (smoke asks for fp32)
    assert "precision" not in spec(**cpu).identity()["spec"]
    assert spec(precision="fp32", **cpu).run_id != spec(**cpu).run_id != spec(precision="bf16", **cpu).run_id
    assert spec(precision="fp32", **cpu).effective_precision == "fp32" and spec(**cpu).effective_precision == "bf16"
    assert spec().effective_precision == "fp32" and "precision" not in spec().identity()["spec"]
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        spec(precision="fp16")


def test_bf16_on_a_cpu_without_it_becomes_an_fp32_run(monkeypatch):
    """A record never claims bf16 for a run that fell back to fp32 (the fp32 run has its own id)."""
    from covid_lib.runs import execution

    monkeypatch.setattr(execution, "cpu_has_bf16", lambda: False)  # where machine_precision looks it up
    s = spec(profile="cpu").resolved()
    fp32 = runs.machine_precision(s, "cpu")
    assert fp32.precision == "fp32" and fp32.run_id != s.run_id
    assert runs.machine_precision(fp32, "cpu") is fp32
    with pytest.raises(ValueError, match="asks for bf16, which this CPU lacks"):
        execution._check_precision(s, "cpu")
    assert runs.machine_precision(spec().resolved(), "cpu").precision is None  # smoke: fp32, no twin
    monkeypatch.setattr(execution, "cpu_has_bf16", lambda: True)
    assert runs.machine_precision(s, "cpu") is s


def test_cli_choices_match_the_library():
    from covid_lib.cli import train as cli_train
    from covid_lib.data import COMPOSITIONS

    assert cli_train.COMPOSITION_NAMES == tuple(COMPOSITIONS) and cli_train.ARCHS == runs.CLASSIFIERS
    assert cli_train._PRETRAIN == ("none", *runs.PRETRAIN_SOURCES)


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


def _fake_artifacts(s: RunSpec) -> runs.RunArtifacts:
    table = pd.DataFrame({"test_set": ["CORDA"], "threshold_rule": ["paper (0.5)"], "threshold": [0.5],
                          "n": [2], **{f"{m}{sfx}": [0.5] for m in ("sensitivity", "specificity", "f_score",
                                    "accuracy", "balanced_accuracy", "auc", "dor") for sfx in ("", "_low", "_high")}})
    metrics = {"table": table.to_dict("records"), "did_not_learn": True, "monitor": "val_auc", "best_value": 0.5,
               "test_sets": {"CORDA": {"n_expected": 3, "n_scored": 2, "rejected": [{"image_id": "x", "reason": "r"}]}}}
    files = {"spec.json": {"run_id": s.run_id, "did_not_learn": True}, "history.csv": pd.DataFrame({"epoch": [1]}),
             "scores.csv": pd.DataFrame({"test_set": ["CORDA"], "image_id": ["a"], "score": [0.4]}),
             "rejections.csv": pd.DataFrame({"set": ["CORDA"], "split": ["test"], "image_id": ["x"], "reason": ["r"]}),
             "metrics.json": metrics,
             "timings.json": {"total_s": 1.0}}
    return runs.RunArtifacts(s, files, b"weights")


def test_finished_run_is_reused_not_retrained(monkeypatch, tmp_path):
    calls = []

    def fake_compute(s, **kw):
        calls.append(s.run_id)
        return _fake_artifacts(s)

    monkeypatch.setattr(runs.execution, "compute", fake_compute)
    s = spec(pretrain=None)
    first = run(s, device="cpu", storage=tmp_path / "ckpt")
    second = run(s, device="cpu", storage=tmp_path / "ckpt")
    assert calls == [s.run_id] and not first.reused and second.reused
    assert (runs.results_dir() / s.run_id / "metrics.json").is_file()
    assert (tmp_path / "ckpt" / s.run_id / "model.pt").read_bytes() == b"weights"
    table = runs.summary_table(second)
    assert "AUC" in table.columns and table["did_not_learn"].all() and table["n_expected"].tolist() == [3]
    assert second.record["git"]["commit"]  # the driver's git state joins spec.json
    run(s, device="cpu", force=True, storage=tmp_path / "ckpt")
    assert len(calls) == 2


def test_a_run_trains_with_a_resume_file_in_its_cache_folder_deleted_once_recorded(monkeypatch, tmp_path):
    """compute() gives the fit ``<storage>/<run_id>/resume.pt`` (keyed by the run id); the driver
    deletes it once the record is written. Without ``resume`` (a Ray worker) there is none."""
    from covid_lib.runs import execution

    seen = {}

    def fake_finetune(s, data_root, device, threads, progress, parent):
        cfg = execution._train_config(s, device, threads, progress)
        seen[s.run_id] = cfg
        if cfg.resume_file:  # a stopped session would leave its last epoch here
            (tmp_path / "ckpt" / s.run_id).mkdir(parents=True, exist_ok=True)
            (tmp_path / "ckpt" / s.run_id / "resume.pt").write_bytes(b"epoch")
        return _fake_artifacts(s)

    monkeypatch.setattr(execution, "_finetune", fake_finetune)
    s = spec(pretrain=None)
    path = runs.resume_path(s.run_id, tmp_path / "ckpt")
    run(s, device="cpu", storage=tmp_path / "ckpt", progress=False)
    cfg = seen[s.run_id]
    assert cfg.resume_file == str(path) and cfg.resume_key == s.run_id and path.parent.name == s.run_id
    assert not path.exists() and (path.parent / "model.pt").is_file()
    execution.compute(s.resolved(), device="cpu")
    assert seen[s.run_id].resume_file is None and execution._RESUME_STORAGE.get() is None


def test_failure_note_is_cleared_by_success(tmp_path):
    s = spec(pretrain=None)
    runs.write_failure(s, "Traceback (most recent call last):\nValueError: boom\n")
    assert runs.read_failure(s.run_id)["reason"] == "ValueError: boom"
    runs.write_artifacts(_fake_artifacts(s), tmp_path)
    assert runs.read_failure(s.run_id) is None


def test_failure_notes_live_in_the_cache_not_in_the_records_folder():
    s = spec(pretrain=None)
    log = runs.write_failure(s, "Traceback (most recent call last):\nRuntimeError: out of memory\n")
    assert log == runs.failure_path(s.run_id).with_suffix(".log") and runs.failures_dir() in log.parents
    assert "RuntimeError: out of memory" in log.read_text() and not (runs.results_dir() / s.run_id).exists()
    runs.clear_failure(s.run_id)
    assert not log.exists() and runs.read_failure(s.run_id) is None


def _files(path) -> dict:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def test_record_reads_a_run_and_says_its_status(tmp_path):
    """One reader: status through missing, failed and recorded; contents; the cached checkpoint;
    the records' folder is $COVID_LIB_RESULTS (or an explicit one)."""
    s = spec(pretrain=None).resolved()
    record = runs.Record.of(s, storage=tmp_path / "ckpt")
    assert record.path == runs.results_dir() / s.run_id and not record.need_checkpoint
    assert (record.status, record.note, record.metrics, record.checkpoint) == ("missing", "", {}, None)
    assert record.scores().empty and record.history.empty and record.rejections.empty
    runs.write_failure(s, "Traceback (most recent call last):\nValueError: boom\n")
    assert (record.status, record.note) == ("failed", "ValueError: boom")
    runs.write_artifacts(_fake_artifacts(s), tmp_path / "ckpt")  # clears the failure note
    assert record.recorded and record.failure is None
    assert (record.status, record.note) == ("did not learn", "best val_auc 0.500")
    assert record.checkpoint == tmp_path / "ckpt" / s.run_id / "model.pt"
    assert record.scores("CORDA")["image_id"].tolist() == ["a"] and record.scores("CORDA&RSNA").empty
    assert record.rejections["reason"].tolist() == ["r"] and record.history["epoch"].tolist() == [1]
    assert record.table["test_set"].tolist() == ["CORDA"] and record.timings == {"total_s": 1.0}
    assert record.result().run_id == s.run_id and runs.Record.of(s.run_id).status == "did not learn"
    # the same record read from another folder by run id alone; no checkpoint in another storage
    elsewhere = runs.Record.of(s.run_id, results=runs.results_dir(), storage=tmp_path / "empty")
    assert elsewhere.checkpoint is None and elsewhere.status == "did not learn"  # a fine-tune's numbers stand
    assert runs.Record.of(s.run_id, need_checkpoint=True, storage=tmp_path / "empty").status == \
        "recorded (no checkpoint here)"
    assert runs.Record.of(s, results=tmp_path / "nowhere").status == "missing"
    assert set(runs.LEARNED) < set(runs.STATUSES) and "recorded (no checkpoint here)" in runs.STATUSES


def test_a_recorded_pretraining_is_never_rewritten_its_checkpoint_restored(monkeypatch, tmp_path, capsys):
    """A fresh clone: records committed, checkpoints not cached. Reading a fine-tune computes
    nothing; a pre-training, or a new fine-tune that starts from it, retrains it into the cache
    for its checkpoint only, leaving every file of its record as it was."""
    calls = []

    def fake_compute(s, *, pretrain_checkpoint=None, **kw):
        calls.append(s.run_id)
        if s.parent_spec() is not None:
            assert pretrain_checkpoint == b"weights"
        return _fake_artifacts(s)

    monkeypatch.setattr(runs.execution, "compute", fake_compute)
    first = run(spec(), device="cpu", storage=tmp_path / "here", progress=False)
    pre = first.spec.pretrain_spec()
    assert calls == [pre.run_id, first.run_id]
    before = {r: _files(runs.results_dir() / r) for r in (pre.run_id, first.run_id)}
    assert runs.Record.of(pre, storage=tmp_path / "clone").status == "recorded (no checkpoint here)"
    capsys.readouterr()

    calls.clear()  # the fine-tune, recorded: read back, nothing computed, no checkpoint needed
    assert run(spec(), device="cpu", storage=tmp_path / "clone", progress=False).reused and calls == []
    assert runs.Record.of(pre, storage=tmp_path / "clone").checkpoint is None
    # the pre-training itself: its checkpoint is restored, its record untouched
    assert run(pre, device="cpu", storage=tmp_path / "clone", progress=False).reused and calls == [pre.run_id]
    assert runs.Record.of(pre, storage=tmp_path / "clone").checkpoint is not None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"run {pre.run_id}: recorded, but its checkpoint is not cached here" in err \
        and "its committed record is left as it is" in err
    # a new fine-tune on another fresh storage: the parent restored first, then the fine-tune trained
    calls.clear()
    other = run(spec(composition="CORDA&RSNA"), device="cpu", storage=tmp_path / "fresh", progress=False)
    assert calls == [pre.run_id, other.run_id] and not other.reused
    assert (tmp_path / "fresh" / pre.run_id / "model.pt").is_file()
    assert {r: _files(runs.results_dir() / r) for r in before} == before
    # force still retrains (and rewrites) the run it is given, never its parent
    calls.clear()
    run(spec(), device="cpu", storage=tmp_path / "fresh", progress=False, force=True)
    assert calls == [first.run_id]


def test_compute_needs_a_resolved_spec_and_the_pretraining_checkpoint():
    with pytest.raises(ValueError, match="resolved spec"):
        runs.compute(RunSpec("CORDA", profile="smoke"))
    with pytest.raises(ValueError, match="fine-tunes pre-training run pretrain-kermany-resnet18-scratch-smoke"):
        runs.compute(spec().resolved())


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
    assert {"spec.json", "history.csv", "scores.csv", "val_scores.csv", "metrics.json", "timings.json",
            "rejections.csv"} <= {p.name for p in path.iterdir()}
    assert path.parent == runs.results_dir() and result.checkpoint.is_file()
    record = json.loads((path / "spec.json").read_text())
    assert record["git"]["commit"] and record["data_version"] and record["pretrain_run"].startswith("pretrain-kermany")
    from covid_lib.data import COMPOSITIONS
    assert set(result.scores["test_set"]) == set(COMPOSITIONS)
    assert result.scores["score"].between(0, 1).all()
    assert set(result.metrics["threshold_rule"]) == {"paper (0.5)", "validation (youden)"}
    # no test set shrinks silently: expected = scored + rejected, per test set
    sets = json.loads((path / "metrics.json").read_text())["test_sets"]
    assert set(sets) == set(COMPOSITIONS)
    for name, entry in sets.items():
        assert entry["n_expected"] == entry["n_scored"] + len(entry["rejected"])
        assert entry["n_scored"] == (result.scores["test_set"] == name).sum()
        assert all(r["reason"] for r in entry["rejected"])
    rejections = result.rejections
    assert len(rejections.query("split == 'test'")) == sum(len(e["rejected"]) for e in sets.values())
    # learning curves, did-not-learn flag, runtime
    for rec in (path, runs.results_dir() / record["pretrain_run"]):
        history = pd.read_csv(rec / "history.csv")
        assert {"train_loss", "train_auc", "val_loss", "val_auc"} <= set(history.columns) and len(history)
        metrics = json.loads((rec / "metrics.json").read_text())
        spec_json = json.loads((rec / "spec.json").read_text())
        assert metrics["did_not_learn"] == spec_json["did_not_learn"] == (metrics["best_value"] < 0.6)
        assert {"monitor", "best_value"} <= set(spec_json)
        timings = json.loads((rec / "timings.json").read_text())
        assert {"device", "precision", "threads"} <= set(timings["runtime"]) and timings["train_images_per_s"] > 0
    pre_metrics = json.loads((runs.results_dir() / record["pretrain_run"] / "metrics.json").read_text())
    pre_scores = pd.read_csv(runs.results_dir() / record["pretrain_run"] / "scores.csv")
    assert {"prob_0", "prob_1", "prob_2", "group_id", "label"} <= set(pre_scores.columns)
    interval = pre_metrics["test_auc_interval"]
    assert interval["value"] == pytest.approx(pre_metrics["test_auc"]) and "bootstrap" in interval["method"]
    assert pre_metrics["test_accuracy_interval"]["low"] <= pre_metrics["test_accuracy"]
    model, meta = runs.load_model(result.spec)
    # a run id fixes the run: retrained with its pre-training read from the cache, it gives the same
    # weights and scores as with its pre-training just trained
    again = run(s, data_root=data_root, device="cpu", progress=False, force=True)
    model2, _ = runs.load_model(again.spec)
    first, second = model.state_dict(), model2.state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    pd.testing.assert_frame_equal(result.scores, again.scores)
    pd.testing.assert_frame_equal(result.history.drop(columns=["seconds", "images_per_s"]),
                                  again.history.drop(columns=["seconds", "images_per_s"]))
    assert meta["num_classes"] == 2 and meta["input_size"] == 64
    # the CLI reuses the finished run and prints the table with intervals
    assert main(["train", "--composition", "CORDA", "--arch", "resnet18", "--pretrain", "kermany",
                 "--profile", "smoke", "--device", "cpu", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "(reused)" in out and "Sensitivity" in out and "[" in out


def test_a_spec_field_its_kind_would_ignore_is_refused():
    with pytest.raises(ValueError, match="not to the source split"):
        RunSpec("U1-hannover-nih", plant="corner", profile="smoke")
    with pytest.raises(ValueError, match="source splits"):
        RunSpec("CORDA", pretrain="kermany", freeze="encoder", profile="smoke")


def test_a_spec_claimed_by_two_kinds_is_refused(monkeypatch):
    from covid_lib.runs import execution

    spec = RunSpec("CORDA", profile="smoke", data_version="x").resolved()
    monkeypatch.setattr(execution, "RUN_KINDS", [(lambda s: True, execution._finetune), (lambda s: True, execution._finetune)])
    with pytest.raises(ValueError, match="claimed by 2 kinds"):
        execution.compute(spec, device="cpu")


def test_a_run_says_what_the_chain_and_the_integrity_check_refused(monkeypatch, capsys):
    import pandas as pd

    from covid_lib.runs import execution

    spec = RunSpec("CORDA", profile="smoke", data_version="x")
    rows = pd.DataFrame({"source": ["cohen", "cohen"]})
    monkeypatch.setattr(execution, "unreadable_files", lambda root=None: pd.DataFrame(
        {"source": ["cohen", "nih"], "reason": ["unreadable image a.png: truncated", "missing"]}))
    execution._say_refused(spec, {"train": {"n_expected": 10, "n_used": 8}, "test": {"n_expected": 4, "n_used": 4}},
                           rows, None)
    out = capsys.readouterr().out
    assert "the chain refused 2 of 10 train images" in out and "test images" not in out
    assert "the integrity check excluded 1 file(s) of cohen" in out
    monkeypatch.setattr(execution, "unreadable_files", lambda root=None: pd.DataFrame(columns=["source", "reason"]))
    execution._say_refused(spec, {"train": {"n_expected": 10, "n_used": 10}}, rows, None)
    assert capsys.readouterr().out == ""  # nothing refused: nothing said
