"""Pre-training at two scales (issue 17): the fine-tunes' paired difference, seed spreads, the
gate table and the chapters' protocol block (issue 16), on records written through the library."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from covid_lib.report import judge
from covid_lib.report import pretraining as rp
from covid_lib.analysis.seeds import seed_summary
from covid_lib.evaluate import metrics_table
from covid_lib.report.records import matrix_long, spec_records
from covid_lib.runs import RunSpec
from covid_lib.stats import paired_cluster_bootstrap


def _scores(test_set: str, y: np.ndarray, score: np.ndarray) -> pd.DataFrame:
    n = len(y)
    return pd.DataFrame({"test_set": test_set, "source": "cohen", "image_id": [f"i{i}" for i in range(n)],
                         "patient_id": [f"p{i // 2}" for i in range(n)], "group_id": [f"p{i // 2}" for i in range(n)],
                         "label": y, "score": score})


def _spec(pretrain: str, seed: int = 0, composition: str = "CORDA") -> RunSpec:
    return RunSpec(composition, arch="resnet18", pretrain=pretrain, profile="smoke", seed=seed, data_version="v1")


@pytest.fixture
def two_scales(write_record):
    def write(spec, scores):  # with the metrics table a run writes (n_boot 0: the intervals are not used)
        write_record(spec, scores, table=metrics_table(scores, scores, n_boot=0).to_dict("records"))

    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 40)
    good = y + rng.normal(0, 0.6, y.size)  # the whole-set fine-tunes rank better
    poor = y + rng.normal(0, 1.5, y.size)
    squash = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for seed in (0, 1):
        write(_spec("kermany_full", seed), _scores("CORDA", y, squash(good + seed * 0.01)))
        write(_spec("kermany", seed), _scores("CORDA", y, squash(poor + seed * 0.01)))
    write(_spec("kermany_full", 2), _scores("CORDA", y, np.full(y.size, 0.7)))  # collapsed
    write(_spec("kermany", 2), _scores("CORDA", y, squash(poor)))
    specs = [_spec(p, s) for p in ("kermany", "kermany_full") for s in (0, 1, 2)] + [_spec("kermany_full", 3)]
    records = spec_records(specs)
    return records[records["pretrain"] == "kermany"], records[records["pretrain"] == "kermany_full"], y, good, poor


def test_scale_effect_pairs_by_seed_and_leaves_out_collapsed(two_scales):
    small, large, y, good, poor = two_scales
    assert dict(zip(large["seed"], large["status"])) == {0: "done", 1: "done", 2: "collapsed", 3: "missing"}
    effect = rp.scale_effect(small, large, n_boot=300)
    cells = effect["cells"].set_index("composition")
    assert cells.loc["pooled", "estimate"] > 0.1 and cells.loc["pooled", "low"] > 0
    table = rp.scale_effect_table(effect).set_index("trained on")
    assert table.loc["pooled", "seed pairs used / left out"] == "2 / 1"  # seed 3 has no 563-image pair
    # one seed alone equals the paired cluster bootstrap of that seed's two records
    one = rp.scale_effect(small[small["seed"] == 0], large[large["seed"] == 0], n_boot=300)["cells"]
    direct = paired_cluster_bootstrap(y, good, poor, np.repeat(np.arange(y.size // 2), 2), n_boot=300, seed=0)
    assert one.set_index("composition").loc["CORDA", "estimate"] == pytest.approx(direct.estimate, abs=1e-12)


def test_own_test_seed_spread_counts_instead_of_averaging(two_scales):
    """Chapter 04's seed table: matrix_long's own-test rows through the one seed summary."""
    _, large, y, good, _ = two_scales
    own = matrix_long(large).query("diagonal")
    row = seed_summary(own, ["pretrain", "composition"], ["auc"]).iloc[0]
    aucs = [roc_auc_score(y, 1 / (1 + np.exp(-(good + s * 0.01)))) for s in (0, 1)]  # by hand, seeds 0 and 1
    assert row["auc_mean"] == pytest.approx(np.mean(aucs)) and row["auc_sd"] == pytest.approx(np.std(aucs, ddof=1))
    assert (row["seeds_learned"], row["seeds_collapsed"], row["seeds_missing"]) == ([0, 1], [2], [3])


def test_own_test_seed_table_per_scale_counts_instead_of_averaging(two_scales):
    """Chapters 04, 06 and 09's seed tables (:func:`covid_lib.report.records.own_test_seed_table`):
    one row per scale and cell, the mean ± SD of the learned seeds, the others named."""
    from covid_lib.report.records import own_test_seed_table

    small, large, y, good, _ = two_scales
    table = own_test_seed_table({"563 images": small, "whole set": large}, by=("pretrain", "composition"))
    assert table["scale"].tolist() == ["563 images", "whole set"]
    row = table.set_index("scale").loc["whole set"].to_dict()
    aucs = [roc_auc_score(y, 1 / (1 + np.exp(-(good + s * 0.01)))) for s in (0, 1)]
    assert row["own-test AUC mean ± SD"].startswith(f"{np.mean(aucs):.3f} ± {np.std(aucs, ddof=1):.3f}")
    assert row["collapsed"].endswith("(seed 2)") and row["missing"].endswith("(seed 3)"), row  # not averaged in
    assert row["seeds in the mean"] == "2 (seeds 0, 1)"
    assert own_test_seed_table({"563 images": small.iloc[:0]}).empty


def test_claim_markdown_puts_the_rule_before_the_numbers():
    data = {"protocol_hash": judge.P.protocol_hash(), "scales": {"x": {"label": "scale x", "claims": {"C2": {
        "outcome": "reproduced", "estimate": 0.1, "low": 0.05, "high": 0.15, "mde": 0.07, "n_used": 4,
        "n_left_out": 1, "left_out_reasons": {"collapsed": 1}, "reason": "the interval lies above 0"}}}}}
    text = judge.claim_markdown("C2", data)
    assert text.index("**The rule**") < text.index("+0.100 [+0.050, +0.150]")
    assert judge.P.rule_text(judge.P.PROTOCOL["C2"]) in text and "1 collapsed" in text
    stale = judge.claim_markdown("C2", {**data, "protocol_hash": "other"})
    assert "Not judged under this protocol" in stale and "+0.100" not in stale


def test_grid_compute_sums_recorded_timings_and_counts_shared_runs_once(write_record, monkeypatch):
    import covid_lib.grid as grid

    a, b = _spec("kermany_full", 0), _spec("kermany_full", 1)
    grids = {"g1": [a, b], "g2": [a]}  # the named grids (the estimate's reference) are empty here
    monkeypatch.setattr(grid, "grid_specs", lambda name, profile, data_root=None, **kw: grids.get(name, []))
    y = np.tile([0, 1], 10)
    write_record(a, _scores("CORDA", y, y * 0.6 + 0.2), timings={"total_s": 7200.0, "train_images_per_s": 50.0})
    table = grid.grid_compute(["g1", "g2"], "smoke").set_index("grid")
    assert table.loc["g1", ["recorded", "missing", "compute (h)"]].tolist() == [1, 1, 2.0]
    assert table.loc["g2", "compute (h)"] == 2.0
    assert table.loc["all (each run once)", "compute (h)"] == 2.0
    # b, missing, is a's kind of run: 2 h of work at a's speed
    assert table.loc["g1", "left (h, est.)"] == table.loc["all (each run once)", "left (h, est.)"] == "2.0"


def test_grid_compute_command_prints_the_table(write_record, monkeypatch, capsys):
    import covid_lib.grid as grid
    from covid_lib.cli import main

    a = _spec("kermany_full", 0)
    monkeypatch.setattr(grid, "grid_specs", lambda name, profile, data_root=None, **kw: [a])
    y = np.tile([0, 1], 10)
    write_record(a, _scores("CORDA", y, y * 0.6 + 0.2), timings={"total_s": 5400.0, "train_images_per_s": 40.0})
    assert main(["grid", "compute", "table2_full", "conv8_full", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["grid", "runs", "recorded"] and len(out) == 5
    assert out[-2].split()[:5] == ["all", "(each", "run", "once)", "1"] and "1.5" in out[-2]
    assert out[-1].startswith("hours left are at the recorded runs' speeds")  # smoke runs are fp32: no note
    from dataclasses import replace

    from covid_lib.runs import execution

    monkeypatch.setattr(execution, "cpu_has_bf16", lambda: False)  # bf16 runs on a CPU without it: named
    monkeypatch.setattr(execution, "resolve_device", lambda device: "cpu")  # even on a CUDA box
    monkeypatch.setattr(grid, "grid_specs", lambda name, profile, data_root=None, **kw: [replace(a, precision="bf16")])
    assert main(["grid", "compute", "table2_full", "--profile", "smoke"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("note: `grid run` stops on this machine for table2_full:")
    write_record(replace(a, precision="bf16"), _scores("CORDA", y, y * 0.6 + 0.2), timings={"total_s": 60.0})
    assert main(["grid", "compute", "table2_full", "--profile", "smoke"]) == 0  # all recorded: nothing stops
    assert not capsys.readouterr().out.splitlines()[-1].startswith("note:")


def test_checkpoint_matches_record_compares_recorded_probabilities(write_record, monkeypatch):
    """The chapter's check is the runs layer's (:func:`covid_lib.runs.checkpoint_matches_record`): a
    checkpoint cached without a note is re-scored on its record's test images."""
    from covid_lib import runs
    from covid_lib.runs import execution

    spec = RunSpec("kermany", task="pretrain", arch="resnet18", profile="smoke", data_version="v1")
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    scores = pd.DataFrame({"source": "kermany", "image_id": ["a", "b", "c"], "patient_id": ["p", "q", "r"],
                           "group_id": ["p", "q", "r"], "label": [0, 1, 2],
                           **{f"prob_{k}": probs[:, k] for k in range(3)}})
    write_record(spec, scores)
    for shift in (0.0, 0.05):
        runs.write_checkpoint(runs.RunArtifacts(spec, {}, b"cached"))  # the cache, unchecked
        monkeypatch.setattr(execution, "rescore_record",
                            lambda s, shift=shift, **kw: scores.assign(prob_1=scores["prob_1"] + shift))
        got = rp.checkpoint_matches_record(spec)
        assert got["images"] == 3 and got["matches"] is (shift == 0.0)
        assert got["max_abs_diff"] == pytest.approx(shift)


def test_a_loaded_checkpoint_is_not_loaded_again(monkeypatch):
    """Chapter 04 loads each pre-training once (load_pretraining) for the record check and the
    comparison: a ``loaded`` model is scored as given, with no second load."""
    import covid_lib.runs.execution as execution
    import covid_lib.train as train
    from covid_lib.runs import Record

    spec = RunSpec("kermany", task="pretrain", arch="resnet18", profile="smoke", data_version="v1")
    rows = pd.DataFrame({"source": "kermany", "image_id": ["a", "b"]})
    uniform = np.full((2, 3), 1 / 3)
    loads = []
    monkeypatch.setattr(rp, "load_pretraining", lambda s, **kw: loads.append(s.run_id) or ("model", {"mean": 0, "std": 1}))
    monkeypatch.setattr(execution, "rows_dataset", lambda s, r, **kw: ("data", r, None))
    monkeypatch.setattr(train, "predict", lambda model, data, **kw: (uniform, None, None))
    probs, kept = rp.shared_test_probs(spec, rows, loaded=("given", {"mean": 0, "std": 1}))
    assert loads == [] and probs.shape == (2, 3) and len(kept) == 2
    rp.shared_test_probs(spec, rows)
    assert loads == [spec.run_id]
    # the record check re-scores an unchecked checkpoint with its loaded model, never loading it again
    from covid_lib import runs

    seen = []
    runs.write_checkpoint(runs.RunArtifacts(spec, {}, b"cached"))  # in the test's cache, without a check
    monkeypatch.setattr(execution, "load_model", lambda *a, **kw: pytest.fail("the model was loaded again"))
    monkeypatch.setattr(execution, "pretrain_rows", lambda source, data_root=None, split_seed=0: rows)
    monkeypatch.setattr(execution, "predict", lambda model, data, **kw: seen.append(model) or (uniform, None, None))
    monkeypatch.setattr(Record, "scores", lambda self, *a, **k: rows.assign(**{f"prob_{k}": 1 / 3 for k in range(3)}))
    assert rp.checkpoint_matches_record(spec, loaded=("model", {"mean": 0, "std": 1}))["matches"] and seen == ["model"]


def test_specificity_at_matched_sensitivity_is_a_point_of_the_roc_curve():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = y * 0.8 + rng.normal(0, 0.5, 200)
    fpr, tpr, _ = roc_curve(y, s)
    for target in (0.5, 0.8, 0.95):
        expected = 1 - fpr[np.argmax(tpr >= target)]
        got = rp._specificity_at_sensitivity(y, s, np.ones((1, 200)), target)[0]
        assert got == pytest.approx(expected)
    w = np.vstack([np.ones(200), rng.integers(0, 3, 200)])  # one row per bootstrap replicate
    assert rp._specificity_at_sensitivity(y, s, w, 0.8).shape == (2,)


def test_calibration_table_brier_and_ece(write_record):
    from covid_lib.report import reproduction as rp5

    y = np.tile([0, 1], 50)
    calibrated = np.where(y == 1, 0.9, 0.1)
    spec = _spec("kermany_full", 0)
    write_record(spec, _scores("CORDA", y, calibrated))
    records = spec_records([spec, _spec("kermany_full", 1)])
    t = rp5.calibration_table(records, n_boot=200).set_index("seed")
    assert t.loc[0, "Brier"].startswith("0.010") and t.loc[0, "ECE"] == pytest.approx(0.1)
    assert t.loc[0, "Brier of the prevalence"] == 0.25 and t.loc[1, "status"] == "missing"
    assert len(rp5.plot_reliability(records).axes) == 1
