"""Grids: definitions, the local executor (resume, failures, status) and the Ray executor writing
the same records as the local one (smoke runs on real data)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from covid_lib import grid, runs
from covid_lib.runs import RunSpec


@pytest.fixture(autouse=True)
def _tmp_results(tmp_path, monkeypatch):
    """Records go to a temporary folder (the conftest already isolates the cache)."""
    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))


def _specs(name: str, profile: str = "smoke") -> list[RunSpec]:
    return grid.grid_specs(name, profile, data_version="x")


@pytest.mark.parametrize("name, finetunes, pretrainings", [
    ("table2", 15, 2), ("table3", 10, 2), ("conv8", 10, 1), ("table4", 3, 2), ("seeds", 18, 4),
    ("ablation", 4, 1), ("precision", 6, 0)])
def test_grid_sizes_and_pretrainings_first(name, finetunes, pretrainings):
    specs = _specs(name)
    assert sum(s.task == "covid" for s in specs) == finetunes and sum(s.task == "pretrain" for s in specs) == pretrainings
    assert len({s.run_id for s in specs}) == len(specs)
    position = {s.run_id: i for i, s in enumerate(specs)}
    for s in specs:
        if s.pretrain_spec() is not None:
            assert position[s.pretrain_spec().run_id] < position[s.run_id]


def test_grids_share_runs_and_vary_what_they_say():
    assert {s.run_id for s in _specs("table4")} <= {s.run_id for s in _specs("table2")}
    assert {s.arch for s in _specs("table3")} == {"resnet50"} and {s.pipeline for s in _specs("ablation")} == {"none"}
    assert sorted((s.precision, s.seed) for s in _specs("precision")) == \
        [(p, s) for p in ("bf16", "fp32") for s in range(3)]
    assert {s.seed for s in _specs("seeds")} == {0, 1}  # the smoke profile's seeds
    with pytest.raises(ValueError, match="unknown grid 'table9'"):
        grid.grid_specs("table9", data_version="x")


def _fake_artifacts(spec: RunSpec, auc: float = 0.9) -> runs.RunArtifacts:
    metrics = {"table": [], "did_not_learn": auc < 0.6, "monitor": "val_auc", "best_value": auc, "test_sets": {}}
    files = {"spec.json": {"run_id": spec.run_id, "did_not_learn": auc < 0.6, "monitor": "val_auc", "best_value": auc},
             "history.csv": pd.DataFrame({"epoch": [1], "val_auc": [auc]}), "metrics.json": metrics,
             "timings.json": {"total_s": 0.0}}
    return runs.RunArtifacts(spec, files, spec.run_id.encode())


def test_local_grid_resumes_reports_failures_and_counts(tmp_path, monkeypatch, capsys):
    """A failed pre-training fails its fine-tunes with that reason; the others complete; a second
    pass skips finished runs and retries the failed ones; status counts every state."""
    specs = _specs("table4")  # scratch, kermany pre-training + fine-tune, nih pre-training + fine-tune
    calls: list[str] = []
    broken = {"nih"}

    def fake_compute(spec, *, pretrain_checkpoint=None, **kw):
        calls.append(spec.run_id)
        if spec.task == "pretrain" and spec.composition in broken:
            raise RuntimeError("out of memory")
        if spec.pretrain is not None:
            assert pretrain_checkpoint == spec.pretrain_spec().run_id.encode()
        return _fake_artifacts(spec, auc=0.5 if spec.task == "covid" and spec.pretrain is None else 0.9)

    monkeypatch.setattr(grid, "compute", fake_compute)
    storage = tmp_path / "ckpt"
    report = grid.run_grid(specs, "smoke", storage=storage, progress=False)
    nih_pre, nih_ft = (s.run_id for s in specs if "nih" in (s.composition, s.pretrain))
    assert set(report.failed) == {nih_pre, nih_ft} and len(report.trained) == 3
    assert nih_ft not in calls  # never started
    assert report.failed[nih_ft] == f"pre-training run {nih_pre} failed: RuntimeError: out of memory"
    note = runs.read_failure(nih_pre)
    assert "Traceback" in note["traceback"] and "out of memory" in note["traceback"]
    # one line per failed run, naming where its traceback is; nothing written into the records' folder
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 2 and "Traceback" not in "\n".join(err)
    log = runs.failure_path(nih_pre).with_suffix(".log")
    assert err[0] == f"run {nih_pre} failed: RuntimeError: out of memory (traceback: {log})"
    assert "Traceback" in log.read_text() and runs.failures_dir() in log.parents
    assert not (runs.results_dir() / nih_pre).exists() and not (runs.results_dir() / nih_ft).exists()
    status = grid.grid_status(specs, storage=storage)
    assert grid.status_counts(status) == {"done": 2, "did not learn": 1, "collapsed": 0,
                                          "recorded (no checkpoint here)": 0, "retrained here, differs from record": 0,
                                          "failed": 2, "missing": 0}
    assert status.set_index("run_id").loc[nih_ft, "note"].startswith("pre-training run")

    broken.clear()
    calls.clear()
    report = grid.run_grid(specs, "smoke", storage=storage, progress=False)
    assert calls == [nih_pre, nih_ft] and len(report.skipped) == 3 and not report.failed
    assert runs.read_failure(nih_pre) is None and not log.exists()  # removed by the success
    assert grid.status_counts(grid.grid_status(specs, storage=storage))["failed"] == 0


def test_a_bf16_grid_is_not_restarted_as_fp32_twins_on_a_cpu_without_bf16(tmp_path, monkeypatch, capsys):
    """Where the CPU lacks bf16 every bf16 run becomes an fp32 run with another id: a grid of bf16
    runs is refused (nothing computed; the message counts them and those recorded in bf16) unless
    the twins are asked for or every run is recorded (nothing to train); fp32 runs and CPUs with
    bf16 run as before."""
    from covid_lib.cli import main
    from covid_lib.runs import execution

    specs = [replace(s, precision="bf16") for s in _specs("table4")]  # parents inherit the precision
    new = [replace(next(s for s in _specs("table2") if (s.composition, s.pretrain) == ("CORDA", None)),
                   precision="bf16")]  # a bf16 grid with nothing recorded (below)
    calls: list[str] = []
    monkeypatch.setattr(grid, "compute", lambda spec, **kw: calls.append(spec.run_id) or _fake_artifacts(spec))
    storage = tmp_path / "ckpt"
    monkeypatch.setattr(execution, "cpu_has_bf16", lambda: True)
    grid.run_grid(specs[:3], "smoke", storage=storage, progress=False, device="cpu")  # 3 of 5 recorded in bf16
    assert calls == [s.run_id for s in specs[:3]]

    monkeypatch.setattr(execution, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(execution, "resolve_device", lambda device: "cpu")  # `grid status` asks for auto
    calls.clear()
    with pytest.raises(ValueError, match="5 bf16 runs would be trained as fp32 runs with other run ids .*; "
                       "3 of them are already recorded in bf16 \\(2 missing\\)"):
        grid.run_grid(specs, "smoke", storage=storage, progress=False, device="cpu")
    assert calls == []
    done = grid.run_grid(specs[:3], "smoke", storage=storage, progress=False, device="cpu")  # all recorded:
    assert calls == [] and len(done.skipped) == 3 and not done.trained  # nothing to train, so nothing refused
    monkeypatch.setattr(grid, "grid_specs", lambda *a, **k: specs)  # the CLI says why, without a traceback
    assert main(["grid", "run", "table4", "--profile", "smoke", "--device", "cpu", "--storage", str(storage)]) == 2
    assert "--fp32-twins" in capsys.readouterr().err and calls == []
    assert main(["grid", "status", "table4", "--profile", "smoke", "--storage", str(storage)]) == 0
    assert "note: `grid run table4` stops on this machine: this CPU has no native bf16" in capsys.readouterr().out
    assert "would start again instead of adding nothing" in grid.fp32_twin_problem(specs[:3], "cpu", storage)
    monkeypatch.setattr(execution, "cpu_has_bf16", lambda: True)
    assert grid.fp32_twin_problem(specs, "cpu", storage) is None  # a CPU with bf16 continues the grid
    main(["grid", "status", "table4", "--profile", "smoke", "--storage", str(storage)])
    assert "note:" not in capsys.readouterr().out
    monkeypatch.setattr(execution, "cpu_has_bf16", lambda: False)

    report = grid.run_grid(specs, "smoke", storage=storage, progress=False, device="cpu", fp32_twins=True)
    twins = [runs.machine_precision(s, "cpu") for s in specs]
    assert calls == [t.run_id for t in twins] and len(report.trained) == 5
    assert all(t.precision == "fp32" and t.run_id != s.run_id for s, t in zip(specs, twins))
    assert grid.fp32_twin_problem(twins, "cpu", storage) is None  # fp32 runs have no twin: nothing to refuse
    assert "fp32 twin recorded" not in grid.fp32_twin_problem(new, "cpu", storage)
    assert ("2 of the 2 missing runs have an fp32 twin recorded (the precision control"
            in grid.fp32_twin_problem(specs, "cpu", storage))  # said, and still refused: twins count for nothing
    calls.clear()
    with pytest.raises(ValueError, match="1 bf16 run would be trained as fp32 runs with other run ids .*\\. Run it"):
        grid.run_grid(new, "smoke", storage=storage, progress=False, device="cpu")
    grid.run_grid(new, "smoke", storage=storage, progress=False, device="cpu", fp32_twins=True)
    assert calls == [runs.machine_precision(new[0], "cpu").run_id]


def _tree() -> dict:
    """Every file under the records' folder with its bytes (what git would see)."""
    root = runs.results_dir()
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def test_a_finished_grid_on_a_fresh_clone_is_recorded_and_changes_nothing(tmp_path, monkeypatch, capsys):
    """Records committed, checkpoints not cached: status says recorded, not missing; running the
    grid computes nothing; a new fine-tune restores its pre-training's checkpoint only."""
    specs = _specs("table4")
    calls: list[str] = []

    def fake_compute(spec, *, pretrain_checkpoint=None, **kw):
        calls.append(spec.run_id)
        if spec.pretrain is not None:
            assert pretrain_checkpoint == spec.pretrain_spec().run_id.encode()
        return _fake_artifacts(spec)

    monkeypatch.setattr(grid, "compute", fake_compute)
    grid.run_grid(specs, "smoke", storage=tmp_path / "here", progress=False)
    committed, clone = _tree(), tmp_path / "clone"
    pretrainings = [s.run_id for s in specs if s.task == "pretrain"]
    status = grid.grid_status(specs, storage=clone).set_index("run_id")["state"]
    assert (status[pretrainings] == "recorded (no checkpoint here)").all()
    assert grid.status_counts(status.to_frame("state"))["missing"] == 0
    assert grid.status_counts(status.to_frame("state"))["done"] == 3

    calls.clear()
    report = grid.run_grid(specs, "smoke", storage=clone, progress=False)
    assert calls == [] and len(report.skipped) == len(specs) and not (report.trained or report.restored)
    assert _tree() == committed and not any(clone.rglob("*.pt"))
    capsys.readouterr()

    new = grid.grid_specs("table2", "smoke", data_version="x")
    new = next(s for s in new if (s.composition, s.pretrain) == ("CORDA", "kermany"))
    pre = new.pretrain_spec().run_id
    report = grid.run_grid([*specs, new], "smoke", storage=clone, progress=False)
    assert calls == [pre, new.run_id] and report.restored == [pre] and report.trained == [new.run_id]
    assert "1 checkpoints restored" in report.summary()
    assert (clone / pre / "model.pt").is_file()
    after = _tree()
    assert {k: v for k, v in after.items() if not k.startswith(new.run_id)} == committed  # nothing rewritten
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"run {pre}: recorded, but its checkpoint is not cached here; retraining it into {clone} "
                   "(its committed record is left as it is)"]
    status = grid.grid_status(specs, storage=clone).set_index("run_id")["state"]
    assert status[pre] == "done" and (status[[p for p in pretrainings if p != pre]] ==
                                      "recorded (no checkpoint here)").all()


def test_grid_cli_help_and_unknown_executor():
    from covid_lib.cli import build_parser
    from covid_lib.cli import grid as cli_grid

    assert cli_grid.GRID_NAMES == tuple(grid.GRIDS)
    args = build_parser().parse_args(["grid", "run", "table2", "--profile", "smoke", "--executor", "ray"])
    assert (args.executor, args.device, args.address) == ("ray", "auto", None)
    with pytest.raises(ValueError, match="unknown executor"):
        grid.run_grid([], executor="dask")


# ------------------------------------------------------------------------------------ real data
IGNORED_SPEC_KEYS = {"created", "environment", "git"}
IGNORED_HISTORY_COLUMNS = ["seconds", "images_per_s"]


def _record(results: Path, run_id: str) -> dict:
    """A record's contents without timings, timestamps and environment."""
    path = results / run_id
    out = {}
    for f in sorted(path.iterdir()):
        if f.name == "timings.json":
            continue
        if f.suffix == ".json":
            obj = json.loads(f.read_text())
            out[f.name] = {k: v for k, v in obj.items() if k not in IGNORED_SPEC_KEYS}
        else:
            table = pd.read_csv(f, dtype=str, keep_default_na=False)
            out[f.name] = table.drop(columns=IGNORED_HISTORY_COLUMNS, errors="ignore").to_dict("list")
    return out


def _local_and_ray(specs: list[RunSpec], data_root, tmp_path, monkeypatch) -> None:
    import ray

    from covid_lib.grid import ray_executor as grid_ray

    records = {}
    for executor in ("local", "ray"):
        results = tmp_path / executor
        monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(results))
        if executor == "ray":
            ray.init(num_cpus=2, include_dashboard=False, runtime_env=grid_ray.runtime_env(None), log_to_driver=False)
        try:
            report = grid.run_grid(specs, "smoke", executor=executor, device="cpu", data_root=data_root,
                                   storage=tmp_path / f"ckpt-{executor}", progress=False)
        finally:
            if executor == "ray":
                ray.shutdown()
        assert not report.failed and len(report.trained) == len(specs)
        records[executor] = {s.run_id: _record(results, s.run_id) for s in specs}
        again = grid.run_grid(specs, "smoke", executor=executor, data_root=data_root,
                              storage=tmp_path / f"ckpt-{executor}", progress=False)
        assert len(again.skipped) == len(specs) and not again.trained  # resume: nothing left to do
    for run_id in records["local"]:
        assert records["ray"][run_id] == records["local"][run_id], run_id
    for s in specs:
        a = (tmp_path / "ckpt-local" / s.run_id / "model.pt").read_bytes()
        assert runs.model_from_checkpoint(a)[1]["run_id"] == s.run_id


@pytest.mark.data
@pytest.mark.ray
def test_ray_writes_the_same_records_as_local(data_root, tmp_path, monkeypatch):
    """A pre-training and its fine-tune (a Ray dependency), smoke profile: identical records."""
    pytest.importorskip("ray")
    specs = grid.grid_specs("table4", "smoke", data_root=data_root)
    subset = [s for s in specs if "kermany" in (s.composition, s.pretrain)]
    _local_and_ray(subset, data_root, tmp_path, monkeypatch)


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(3600)
def test_table2_ray_and_local_identical(data_root, tmp_path, monkeypatch):
    """The issue's done-when: grid table2 (smoke) via ray and local writes identical records."""
    pytest.importorskip("ray")
    _local_and_ray(grid.grid_specs("table2", "smoke", data_root=data_root), data_root, tmp_path, monkeypatch)


@pytest.mark.data
def test_fresh_clone_smoke_grid_changes_no_record(data_root, tmp_path, capsys):
    """The fresh-clone trap on real smoke runs: a pre-training and its fine-tune recorded, then
    read with an empty checkpoint storage (a fresh clone). Status says recorded; the grid run
    computes nothing; a new fine-tune retrains the pre-training into the new storage with the
    same weights, and no file of either record changes."""
    specs = [s for s in grid.grid_specs("table4", "smoke", data_root=data_root) if "kermany" in (s.composition, s.pretrain)]
    report = grid.run_grid(specs, "smoke", device="cpu", data_root=data_root, storage=tmp_path / "here", progress=False)
    assert len(report.trained) == 2 and not report.failed
    committed, clone = _tree(), tmp_path / "clone"
    pre = next(s for s in specs if s.task == "pretrain")
    status = grid.grid_status(specs, storage=clone).set_index("run_id")["state"]
    assert status[pre.run_id] == "recorded (no checkpoint here)" and status.drop(pre.run_id).isin(runs.LEARNED).all()
    again = grid.run_grid(specs, "smoke", device="cpu", data_root=data_root, storage=clone, progress=False)
    assert len(again.skipped) == 2 and not (again.trained or again.restored) and _tree() == committed

    new = next(s for s in grid.grid_specs("table2", "smoke", data_root=data_root)
               if (s.composition, s.pretrain) == ("CORDA", "kermany"))
    capsys.readouterr()
    report = grid.run_grid([*specs, new], "smoke", device="cpu", data_root=data_root, storage=clone, progress=False)
    assert report.restored == [pre.run_id] and report.trained == [new.run_id] and not report.failed
    assert {k: v for k, v in _tree().items() if not k.startswith(new.run_id)} == committed
    assert "its committed record is left as it is" in capsys.readouterr().err
    import torch

    a = runs.model_from_checkpoint(tmp_path / "here" / pre.run_id / "model.pt")[0].state_dict()
    b = runs.model_from_checkpoint(clone / pre.run_id / "model.pt")[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # a run id fixes the run
    # on the same machine the retraining reproduces its record's test scores, and the fine-tune says so
    note = runs.Record.of(pre, storage=clone).checkpoint_note
    assert (note["origin"], note["matches_record"]) == ("retrained from its record", True)
    assert note["images"] > 0 and note["max_abs_diff"] <= runs.SCORE_TOLERANCE
    lineage = json.loads((runs.results_dir() / new.run_id / "lineage.json").read_text())
    assert lineage["parent_matches_record"] is True and lineage["parent_run"] == pre.run_id


def test_grid_list_names_every_grid(capsys):
    from covid_lib.cli import main

    assert main(["grid", "list", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in grid.GRIDS) and "17 runs" in out  # table2: 15 + 2 pre-trainings


def test_remaining_hours_are_work_over_speed_from_the_records():
    """`grid compute`'s estimate of the missing runs: work (total_s x images/s) per task and
    composition over speed per arch and input size; a size never recorded scales the nearest
    size's speed by the pixel count and is counted as extrapolated; no basis, no estimate."""
    from types import SimpleNamespace as Spec

    from covid_lib.grid.remaining import CostModel

    def spec(run_id, arch="resnet18", composition="CORDA", size=128, task="covid"):
        return Spec(run_id=run_id, task=task, arch=arch, composition=composition, input_size=size)

    model = CostModel([
        (spec("a"), {"total_s": 100.0, "train_images_per_s": 50.0}),   # work 5000
        (spec("b"), {"total_s": 300.0, "train_images_per_s": 50.0}),   # work 15000
        (spec("c", arch="resnet50", composition="CORDA&RSNA"), {"total_s": 200.0, "train_images_per_s": 20.0}),
        (spec("d", arch="conv8"), {"total_s": 10.0}),                  # no speed: ignored
    ])
    assert model.work == {("covid", "CORDA"): 10000.0, ("covid", "CORDA&RSNA"): 4000.0}
    assert model.seconds(spec("x", arch="resnet50")) == (10000.0 / 20.0, False)
    seconds, extrapolated = model.seconds(spec("y", size=256))
    assert extrapolated and seconds == pytest.approx(10000.0 / (50.0 / 4))
    assert model.seconds(spec("z", composition="COVID-ChestXRay")) is None
    assert model.seconds(spec("w", arch="conv8")) is None
    rem = model.remaining([spec("x", arch="resnet50"), spec("x", arch="resnet50"), spec("y", size=256),
                           spec("z", composition="COVID-ChestXRay")])
    assert (rem.n_missing, rem.n_estimated, rem.extrapolated) == (3, 2, 1)
    assert rem.hours == pytest.approx((500.0 + 800.0) / 3600)
