"""A checkpoint restored by retraining must reproduce its record (issues 16, 18): the machine kind
in a run's runtime, the score comparison, the guard and its marker, the fine-tune's lineage, on
tiny records written through the library (no training)."""

from __future__ import annotations

import hashlib
import json
import types

import numpy as np
import pandas as pd
import pytest

from covid_lib import provenance, runs
from covid_lib.models import create_model
from covid_lib.runs import RunSpec, compare_scores, execution, fidelity, run

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
stepping\t: 1
flags\t\t: fpu sse avx512f avx512_bf16

processor\t: 1
model name\t: another core
"""


def test_machine_kind_reads_the_cpu_model_and_its_bf16_flags(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    monkeypatch.setattr(provenance, "CPUINFO", info)
    kind = provenance.machine_kind("cpu")
    assert kind["cpu"] == "AMD EPYC 9R14" and kind["cpu_id"] == "AuthenticAMD family 25 model 17 stepping 1"
    assert (kind["avx512_bf16"], kind["amx_bf16"]) == (True, False) and kind["torch"]
    label = provenance.machine_label(kind)
    assert label.startswith("AMD EPYC 9R14, AuthenticAMD family 25") and "(avx512_bf16; torch" in label
    assert provenance.machine_label(None) == f"unknown (recorded before {provenance.MACHINE_KIND_SINCE})"


def test_machine_kind_falls_back_without_cpuinfo(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CPUINFO", tmp_path / "absent")
    kind = provenance.machine_kind("cpu")
    assert kind["cpu"] and "cpu_id" not in kind
    assert all(kind[f] in (True, False, None) for f in provenance.BF16_FLAGS)


def test_the_runtime_block_of_timings_carries_the_machine_kind():
    fit = types.SimpleNamespace(seconds=2.0, images_per_s=10.0,
                                runtime={"device": "cpu", "precision": "bf16", "threads": 2})
    runtime = execution._timings(0.0, 1.0, fit, 0.5, 2)["runtime"]
    assert runtime["precision"] == "bf16" and runtime["machine"] == provenance.machine_kind("cpu")
    assert {"cpu", "avx512_bf16", "amx_bf16", "torch"} <= set(runtime["machine"])


# ---------------------------------------------------------------------------------- the comparison
def test_compare_scores_joins_images_and_takes_the_largest_difference():
    recorded = pd.DataFrame({"test_set": ["A", "A", "B"], "source": "s", "image_id": ["1", "2", "1"],
                             "score": [0.1, 0.5, 0.9]})
    same = compare_scores(recorded.iloc[::-1], recorded)  # row order does not matter
    assert (same["images"], same["max_abs_diff"], same["matches"]) == (3, 0.0, True)
    moved = recorded.assign(score=recorded["score"] + [0.0, 0.2, 0.0])
    out = compare_scores(moved, recorded, tolerance=0.1)
    assert out["max_abs_diff"] == pytest.approx(0.2) and out["matches"] is False and out["tolerance"] == 0.1
    probs = pd.DataFrame({"source": "k", "image_id": ["a", "b"], "prob_0": [0.7, 0.2], "prob_1": [0.3, 0.8]})
    assert compare_scores(probs.assign(prob_1=[0.3, 0.75]), probs)["max_abs_diff"] == pytest.approx(0.05)
    nothing = compare_scores(probs.assign(image_id=["x", "y"]), probs)
    assert (nothing["images"], nothing["max_abs_diff"], nothing["matches"]) == (0, None, None)
    assert compare_scores(None, probs)["matches"] is None


# ------------------------------------------------------------------------- restoring a recorded run
RECORDED_KIND = {"cpu": "Recorded CPU", "avx512_bf16": False, "amx_bf16": True, "torch": "2.0"}


@pytest.fixture
def fake_training(tmp_path, monkeypatch):
    """The training functions of :func:`covid_lib.runs.compute` replaced by ones that return a
    tiny record (scores shifted by ``shift[0]``) and count their calls; records under tmp_path."""
    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    calls: list[str] = []
    shift = [0.0]
    parents: dict[str, bytes | None] = {}

    def artifacts(spec, checkpoint: bytes) -> runs.RunArtifacts:
        calls.append(spec.run_id)
        ids = ["a", "b", "c"]
        if spec.task == "pretrain":
            scores = pd.DataFrame({"source": "kermany", "image_id": ids, "prob_0": [0.7 - shift[0], 0.2, 0.1],
                                   "prob_1": [0.3 + shift[0], 0.8, 0.9]})
        else:
            scores = pd.DataFrame({"test_set": spec.composition, "source": "cohen", "image_id": ids,
                                   "score": [0.2 + shift[0], 0.6, 0.9]})
        files = {"spec.json": {"run_id": spec.run_id}, "history.csv": pd.DataFrame({"epoch": [1]}),
                 "scores.csv": scores, "metrics.json": {"table": [], "best_value": 0.8, "monitor": "val_auc"},
                 "timings.json": {"total_s": 1.0, "runtime": {"device": "cpu", "machine": RECORDED_KIND}}}
        return runs.RunArtifacts(spec, files, checkpoint)

    def pretrain(spec, data_root, device, threads, progress, ckpt=None):
        return artifacts(spec, f"weights {spec.run_id} {shift[0]}".encode())

    def finetune(spec, data_root, device, threads, progress, ckpt):
        parents[spec.run_id] = ckpt
        return artifacts(spec, b"fine-tuned")

    monkeypatch.setattr(execution, "_pretrain", pretrain)
    monkeypatch.setattr(execution, "_finetune", finetune)
    return types.SimpleNamespace(calls=calls, shift=shift, parents=parents, storage=tmp_path / "here",
                                 clone=tmp_path / "clone")


def _spec(**kw) -> RunSpec:
    return RunSpec(**{"composition": "CORDA", "arch": "resnet18", "pretrain": "kermany", "profile": "smoke",
                      "data_version": "v1", **kw}).resolved()


def _files(path) -> dict:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def test_a_retraining_that_reproduces_its_record_is_served(fake_training):
    pre = _spec().pretrain_spec()
    run(pre, device="cpu", storage=fake_training.storage, progress=False)
    assert runs.Record.of(pre, storage=fake_training.storage).checkpoint_note["origin"] == fidelity.TRAINED
    path = runs.restore_checkpoint(pre, device="cpu", storage=fake_training.clone, progress=False)
    note = runs.checkpoint_note(pre.run_id, fake_training.clone)
    assert path == fake_training.clone / pre.run_id / "model.pt" and note["origin"] == fidelity.RETRAINED
    assert (note["matches_record"], note["max_abs_diff"], note["images"]) == (True, 0.0, 3)
    assert note["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert runs.read_checkpoint(pre.run_id, fake_training.clone) == path.read_bytes()
    assert runs.Record.of(pre, storage=fake_training.clone).status == "done"


def test_a_retraining_that_differs_is_refused_kept_and_not_retrained_again(fake_training, capsys):
    pre = _spec().pretrain_spec()
    run(pre, device="cpu", storage=fake_training.storage, progress=False)
    record_files = _files(runs.results_dir() / pre.run_id)
    fake_training.calls.clear()
    fake_training.shift[0] = 0.25  # the same run id gives other weights on this "machine"
    with pytest.raises(runs.CheckpointMismatch) as err:
        runs.restore_checkpoint(pre, device="cpu", storage=fake_training.clone, progress=False)
    message = str(err.value)
    assert "\n" not in message and pre.run_id in message and "max |Δ score| 0.25 on 3" in message
    assert f"CPU recorded: {provenance.machine_label(RECORDED_KIND)}" in message
    assert "allow_mismatch=True" in message and str(fake_training.clone / pre.run_id) in message
    assert err.value.run_id == pre.run_id and fake_training.calls == [pre.run_id]
    assert "differs from its record" in capsys.readouterr().err
    # kept, marked as differing; the record untouched
    note = runs.checkpoint_note(pre.run_id, fake_training.clone)
    assert (note["origin"], note["matches_record"]) == (fidelity.RETRAINED, False)
    assert note["max_abs_diff"] == pytest.approx(0.25) and note["recorded_machine"] == RECORDED_KIND
    assert (fake_training.clone / pre.run_id / "model.pt").is_file()
    assert _files(runs.results_dir() / pre.run_id) == record_files
    record = runs.Record.of(pre, storage=fake_training.clone)
    assert record.checkpoint_differs and record.status == runs.DIFFERS and "0.25" in record.note
    # a second call refuses again without retraining; every reader refuses it as the recorded model
    with pytest.raises(runs.CheckpointMismatch):
        runs.restore_checkpoint(pre, device="cpu", storage=fake_training.clone, progress=False)
    with pytest.raises(runs.CheckpointMismatch):
        run(pre, device="cpu", storage=fake_training.clone, progress=False)
    with pytest.raises(runs.CheckpointMismatch):
        runs.read_checkpoint(pre.run_id, fake_training.clone)
    with pytest.raises(runs.CheckpointMismatch):
        runs.load_model(pre, storage=fake_training.clone)
    assert fake_training.calls == [pre.run_id]
    # an explicit opt-in serves it
    path = runs.restore_checkpoint(pre, device="cpu", storage=fake_training.clone, progress=False,
                                   allow_mismatch=True)
    assert path.read_bytes() == runs.read_checkpoint(pre.run_id, fake_training.clone, allow_mismatch=True)
    assert run(pre, device="cpu", storage=fake_training.clone, progress=False, allow_mismatch=True).reused
    assert fake_training.calls == [pre.run_id]
    # new weights written for the run replace the note with theirs
    runs.write_artifacts(execution.compute(pre, device="cpu"), fake_training.clone)
    assert not runs.Record.of(pre, storage=fake_training.clone).checkpoint_differs


def test_a_fine_tune_from_a_differing_parent_records_its_lineage(fake_training):
    child = _spec()
    run(child, device="cpu", storage=fake_training.storage, progress=False)
    pre = child.pretrain_spec()
    lineage = json.loads((runs.results_dir() / child.run_id / "lineage.json").read_text())
    parent_bytes = runs.read_checkpoint(pre.run_id, fake_training.storage)
    assert lineage == {"parent_run": pre.run_id, "parent_checkpoint_sha256": hashlib.sha256(parent_bytes).hexdigest(),
                       "parent_checkpoint_origin": fidelity.TRAINED, "parent_matches_record": True,
                       "parent_max_abs_diff": 0.0}
    assert "lineage" not in json.dumps(json.loads((runs.results_dir() / child.run_id / "spec.json").read_text()))
    # a fresh clone on another kind of machine: the parent's retraining differs, the fine-tune goes on
    fake_training.shift[0] = 0.25
    other = _spec(composition="CORDA&RSNA")
    result = run(other, device="cpu", storage=fake_training.clone, progress=False)
    assert not result.reused and fake_training.calls[-2:] == [pre.run_id, other.run_id]
    assert runs.Record.of(pre, storage=fake_training.clone).checkpoint_differs
    lineage = json.loads((runs.results_dir() / other.run_id / "lineage.json").read_text())
    differing = runs.read_checkpoint(pre.run_id, fake_training.clone, allow_mismatch=True)
    assert fake_training.parents[other.run_id] == differing
    assert lineage["parent_checkpoint_sha256"] == hashlib.sha256(differing).hexdigest()
    assert lineage["parent_matches_record"] is False and lineage["parent_max_abs_diff"] == pytest.approx(0.25)
    assert lineage["parent_checkpoint_origin"] == fidelity.RETRAINED
    assert other.run_id == _spec(composition="CORDA&RSNA").run_id  # the run id does not see any of it


def test_the_grid_restores_a_differing_parent_says_so_and_fine_tunes_from_it(fake_training, capsys):
    from covid_lib import grid

    child = _spec()
    grid.run_grid([child], "smoke", device="cpu", storage=fake_training.storage, progress=False)
    fake_training.shift[0] = 0.25
    new = _spec(composition="CORDA&RSNA")
    capsys.readouterr()
    report = grid.run_grid([child, new], "smoke", device="cpu", storage=fake_training.clone, progress=False)
    pre = child.pretrain_spec().run_id
    assert report.restored == [pre] and report.differs == [pre] and report.trained == [new.run_id]
    assert "1 checkpoints restored (1 differ from their record)" in report.summary()
    err = capsys.readouterr().err
    assert f"warning: run {pre}: its checkpoint, retrained from its record, differs" in err
    lineage = json.loads((runs.results_dir() / new.run_id / "lineage.json").read_text())
    assert lineage["parent_matches_record"] is False
    status = grid.grid_status([child, new], storage=fake_training.clone).set_index("run_id")["state"]
    assert status[pre] == runs.DIFFERS and grid.status_counts(status.to_frame("state"))[runs.DIFFERS] == 1


def test_tables_list_a_differing_model_instead_of_measuring_it(fake_training):
    from covid_lib.report.saliency import checkpoint_state

    pre = _spec().pretrain_spec()
    run(pre, device="cpu", storage=fake_training.storage, progress=False)
    assert checkpoint_state("done", pre.run_id, fake_training.storage) == "done"
    assert checkpoint_state("done", pre.run_id, fake_training.clone) == "no checkpoint"
    assert checkpoint_state("missing", pre.run_id, fake_training.clone) == "not yet recorded"
    fake_training.shift[0] = 0.25
    differ = runs.restore_checkpoints([pre], device="cpu", storage=fake_training.clone)
    assert list(differ) == [pre.run_id] and isinstance(differ[pre.run_id], runs.CheckpointMismatch)
    assert checkpoint_state("done", pre.run_id, fake_training.clone) == runs.DIFFERS
    assert runs.restore_checkpoints([pre], device="cpu", storage=fake_training.clone).keys() == {pre.run_id}
    assert fake_training.calls.count(pre.run_id) == 2  # trained once, retrained once, never again


# ------------------------------------------------------------------ checking a checkpoint cached earlier
def test_an_unchecked_checkpoint_is_rescored_once_and_noted(fake_training, monkeypatch):
    pre = _spec().pretrain_spec()
    run(pre, device="cpu", storage=fake_training.storage, progress=False)
    recorded = runs.Record.of(pre).scores()
    runs.write_checkpoint(runs.RunArtifacts(pre, {}, b"cached before notes"), fake_training.clone)
    assert runs.checkpoint_note(pre.run_id, fake_training.clone)["origin"] == fidelity.UNCHECKED
    rescored = []

    def rescore(spec, **kw):
        rescored.append(spec.run_id)
        return recorded.assign(prob_0=recorded["prob_0"] + 0.05)

    monkeypatch.setattr(execution, "rescore_record", rescore)
    out = runs.checkpoint_matches_record(pre, storage=fake_training.clone)
    assert (out["images"], out["matches"]) == (3, False) and out["max_abs_diff"] == pytest.approx(0.05)
    note = runs.checkpoint_note(pre.run_id, fake_training.clone)
    assert (note["origin"], note["matches_record"]) == (fidelity.CHECKED, False)
    assert runs.checkpoint_matches_record(pre, storage=fake_training.clone)["matches"] is False
    assert rescored == [pre.run_id]  # answered from the note the second time
    with pytest.raises(runs.CheckpointMismatch, match="cached, checked against its record"):
        runs.load_model(pre, storage=fake_training.clone)
    assert runs.checkpoint_matches_record(pre, storage=fake_training.storage) == \
        {"images": 3, "max_abs_diff": 0.0, "matches": True}  # trained with its record


def test_rescore_record_scores_the_records_own_test_images(fake_training, monkeypatch):
    pre = _spec().pretrain_spec()
    run(pre, device="cpu", storage=fake_training.storage, progress=False)
    pool = pd.DataFrame({"source": "kermany", "image_id": ["a", "b", "c", "z"], "split": "test"})
    seen = {}

    def rows_dataset(spec, rows, **kw):
        seen["ids"] = rows["image_id"].tolist()
        return "data", rows, None

    monkeypatch.setattr(execution, "pretrain_rows", lambda source, data_root=None, split_seed=0: pool)
    monkeypatch.setattr(execution, "load_model", lambda *a, **kw: (None, {"mean": 0.0, "std": 1.0}))
    monkeypatch.setattr(execution, "rows_dataset", rows_dataset)
    monkeypatch.setattr(execution, "predict", lambda model, data, device: (np.array([[0.7, 0.3], [0.2, 0.8],
                                                                                       [0.1, 0.9]]), None, None))
    out = runs.rescore_record(pre)
    assert seen["ids"] == ["a", "b", "c"] and out.columns.tolist() == ["source", "image_id", "prob_0", "prob_1"]
    assert compare_scores(out, runs.Record.of(pre).scores())["matches"] is True


def test_rescore_record_hands_a_planted_run_to_its_own_rescorer(tmp_path, monkeypatch):
    """A kind of run registered in RESCORE_KINDS (a planted run) is re-scored by its own function
    from the loaded checkpoint; a kind without one is refused."""
    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    spec = RunSpec("CORDA", profile="cpu", pipeline="none", plant="corner")
    got = {}

    def rescore(s, model, meta, data_root, device):
        got.update(run_id=s.run_id, model=model, meta=meta, device=device)
        return pd.DataFrame({"test_set": ["CORDA · marked"], "source": ["cohen"], "image_id": ["1"], "score": [0.5]})

    assert any(claims(spec) for claims, _ in execution.RESCORE_KINDS)  # registered by covid_lib.runs.planted
    monkeypatch.setattr(execution, "RESCORE_KINDS", [(lambda s: s.plant is not None, rescore)])
    out = runs.rescore_record(spec, loaded=("model", {"mean": 0.5, "std": 0.2}))
    assert out["score"].tolist() == [0.5] and got == {"run_id": spec.run_id, "model": "model",
                                                      "meta": {"mean": 0.5, "std": 0.2}, "device": "cpu"}
    monkeypatch.setattr(execution, "RESCORE_KINDS", [])
    with pytest.raises(ValueError, match="re-scoring a record is implemented"):
        runs.rescore_record(spec, loaded=("model", {"mean": 0.5, "std": 0.2}))


def test_planted_test_scores_rebuild_each_variant_as_the_run_scored_it(monkeypatch):
    """Both copies of each test image through the chain, the marked copy where the variant marks
    the image, rows either copy lost left out of every variant, the checkpoint's normalisation."""
    from covid_lib.preprocess.plant import MarkedImages
    from covid_lib.runs import planted

    spec = RunSpec("CORDA", profile="cpu", pipeline="none", plant="corner")
    rows = pd.DataFrame({"source": "cohen", "image_id": [str(i) for i in range(5)], "label": [0, 1, 0, 1, 1],
                         "split": ["test", "test", "test", "test", "train"]})
    ok = np.array([True, True, False, True])  # the chain lost image 2

    def copy(flag):
        images = np.full((4, 2, 2), 200 if flag else 10, np.uint8)
        return MarkedImages(images, ok, np.full(4, flag), np.zeros((4, 2, 2), bool), pd.DataFrame(), 0.0)

    monkeypatch.setattr(planted, "compose", lambda name, data_root=None, seed=0: rows)
    monkeypatch.setattr(planted, "limit_rows", lambda r, n, seed=0: r)
    monkeypatch.setattr(planted, "_versions", lambda s, part, unet, device: {False: copy(False), True: copy(True)})
    made = []

    def make_dataset(kept, images, *, input_size, mean, std):
        made.append((kept["image_id"].tolist(), images[:, 0, 0].tolist(), mean, std))
        return images

    monkeypatch.setattr(planted, "make_dataset", make_dataset)
    monkeypatch.setattr(planted, "score_images", lambda model, data, kept, test_set, device: kept[
        ["source", "image_id", "label"]].assign(test_set=test_set, score=data[:, 0, 0] / 255))
    out = planted.planted_test_scores(spec, "model", {"mean": 0.4, "std": 0.2})
    assert made == [(["0", "1", "3"], [10, 10, 10], 0.4, 0.2), (["0", "1", "3"], [10, 200, 200], 0.4, 0.2),
                    (["0", "1", "3"], [200, 10, 10], 0.4, 0.2)]
    assert out["test_set"].unique().tolist() == ["CORDA · unmarked", "CORDA · marked", "CORDA · flipped"]
    assert len(out) == 9


# ------------------------------------------------------------------------------------- the callers
def test_c4_counts_a_differing_encoder_as_left_out_with_its_reason():
    from covid_lib.analysis import claims as C

    rng = np.random.default_rng(3)
    rows = [{"encoder": enc, "reading": reading, "group_id": f"p{i // 2}", "target": str(i % 2),
             "predicted": str(i % 2) if rng.random() < 0.8 else str(1 - i % 2)}
            for enc in ("fine-tuned/s0", "random/s0") for reading in (C.C4_SOURCE, C.C4_LABEL) for i in range(40)]
    est = C.estimate_c4(pd.DataFrame(rows), seeds=(0, 1), unusable={1: f"{runs.DIFFERS}: max |Δ score| 0.38"})
    assert est.n_left_out == 1 and est.left_out["status_a"].tolist() == [f"{runs.DIFFERS}: max |Δ score| 0.38"]


def test_the_audit_says_when_a_checkpoint_differs_from_its_record(tmp_path, monkeypatch):
    from covid_lib.audit import model as audit_model

    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    s = _spec(arch="conv8", pretrain=None, pipeline="none")
    ckpt = tmp_path / "ckpt" / s.run_id / "model.pt"
    data = runs.records.checkpoint_bytes(create_model("conv8", num_classes=2), s, 2, 0.5, 0.25)
    record = runs.Record.of(s).path
    record.mkdir(parents=True)
    (record / "spec.json").write_text(json.dumps({"run_id": s.run_id, "spec": {"pipeline": "none"}}))
    runs.write_checkpoint(runs.RunArtifacts(s, {}, data), tmp_path / "ckpt", note={"origin": fidelity.RETRAINED})
    assert not audit_model.resolve_model(str(ckpt)).notes
    runs.write_checkpoint(runs.RunArtifacts(s, {}, data), tmp_path / "ckpt", note={
        "origin": fidelity.RETRAINED, "matches_record": False, "max_abs_diff": 0.3, "images": 5})
    notes = audit_model.resolve_model(str(ckpt)).notes
    assert len(notes) == 1 and "differs from its record (max |Δ score| 0.3" in notes[0]
    assert "the audit scores this retraining, not the recorded model" in notes[0]


def test_finding_f4_counts_a_differing_model_as_left_out_with_its_reason(tmp_path, monkeypatch):
    from covid_lib.report import findings as rf

    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    rows = [{"run_id": "a", "pipeline": "none", "group_id": f"p{i // 2}", "label": 1, "seen": "trained on",
             "share": 0.5 + 0.01 * i, "baseline": 0.4, "map_status": "measured"} for i in range(8)]
    rf._write_meta("F4", {"runs": {"a": "done", "b": "done", "c": "done"}, "differs_from_record": ["b"]})
    pd.DataFrame(rows).to_csv(rf.finding_path("F4"), index=False)
    est, measured, why = rf.f4_estimate()
    assert why is None and measured == ["a"]
    assert dict(zip(est.left_out["run_id"], est.left_out["status_a"])) == {"b": runs.DIFFERS, "c": "no checkpoint"}


def test_finding_f4_says_when_its_check_used_planted_models_trained_here(tmp_path, monkeypatch):
    from covid_lib.report import findings as rf
    from covid_lib.report import judge
    from covid_lib.report.saliency import mapped_specs

    assert rf.f4_specs("cpu") == mapped_specs("cpu", "kermany_full")  # the whole-set models chapter 12 maps
    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    rows = [{"run_id": "a", "pipeline": "paper", "group_id": f"p{i // 2}", "label": 1, "seen": "trained on",
             "share": 0.5 + 0.01 * i, "baseline": 0.4, "map_status": "measured"} for i in range(8)]
    rf.finding_path("F4").parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(rf.finding_path("F4"), index=False)
    for planted, says in (({"p-none": 0.26, "p-paper": 0.089}, True), ({}, False)):
        rf._write_meta("F4", {"runs": {"a": "done"}, "map": "gradinput · input",
                              **({"planted_differs_from_record": planted} if planted else {})})
        est, measured, why = rf.f4_estimate()
        assert why is None and measured == ["a"]
        assert est.extra.get("planted_differs_from_record") == (planted or None)
        line = judge.finding_details("F4", {"details": est.extra})[0]
        assert line.startswith("maps: gradinput · input, the first candidate that found the planted mark")
        assert ("on 2 planted models trained here, not the recorded ones" in line) is says
