"""The pre-training chapter's tables and claim C2, on synthetic run records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covid_lib.report import pretraining as rp
from covid_lib.report import training as rt
from test_report_training import run_spec, write_record

SPEC = dict(task="covid", composition="CORDA", arch="resnet18", profile="cpu", seed=0, pipeline="paper",
            precision=None)


def _scores(y, score):
    n = len(y)
    return pd.DataFrame({"test_set": "CORDA", "source": "cohen", "image_id": [f"i{i}" for i in range(n)],
                         "group_id": [f"p{i // 2}" for i in range(n)], "label": y, "score": score})


@pytest.fixture
def paired(tmp_path):
    y = np.tile([0, 1], 30)
    pre = np.where(y == 1, 0.9, 0.2)  # every COVID- below 0.5: specificity 1
    scratch = np.where(y == 1, 0.9, np.tile([0.2, 0.2, 0.8, 0.8], 15))  # half the COVID- above: 0.5
    write_record(tmp_path, {**SPEC, "pretrain": "kermany"}, _scores(y, pre))
    write_record(tmp_path, {**SPEC, "pretrain": None}, _scores(y, scratch))
    write_record(tmp_path, {**SPEC, "pretrain": None, "precision": "fp32"}, _scores(y, pre))
    return rt.record_index(tmp_path)


def test_specificity_gain_is_paired_with_a_patient_interval(paired):
    gain = rp.specificity_gain(paired, composition="CORDA", pretrain="kermany", n_boot=500)
    assert gain["specificity_pretrained"] == 1.0 and gain["specificity_scratch"] == 0.5
    assert gain["difference"] == pytest.approx(0.5)
    assert gain["n_negatives"] == 30 and gain["n_patients"] == 30
    assert 0 < gain["low"] <= 0.5 <= gain["high"] <= 1.0
    assert gain["did_not_learn"] == ""


def test_run_row_ignores_the_precision_grid(paired):
    row = rt.run_row(paired, task="covid", composition="CORDA", pretrain=None, seed=0)
    assert row["run_id"] == run_spec({**SPEC, "pretrain": None}).run_id
    assert rt.run_row(paired, task="covid", composition="CORDA", pretrain=None, precision="fp32")["run_id"] \
        == run_spec({**SPEC, "pretrain": None, "precision": "fp32"}).run_id


def test_specificity_gains_pair_only_existing_records(paired):
    gains = rp.specificity_gains(paired, ["CORDA", "CORDA&RSNA"], pretrains=["kermany", "nih"], n_boot=300)
    assert len(gains) == 1  # only the pair that exists
    assert gains["low"].iloc[0] > 0  # specificity 1.0 against 0.5
    table = rp.specificity_gain_table(gains)
    assert table["difference [patient 95% CI]"].iloc[0].startswith("0.50 [")


def test_sizes_show_missing_records(tmp_path):
    sizes = rp.pretraining_sizes(rt.record_index(tmp_path))
    assert sizes["paper: images"].tolist() == ["5,857", "5,857", "26,684"]  # kermany, kermany_full, nih
    assert (sizes["ours: train / val / test"] == "– / – / –").all()
    assert rp.pretraining_split_sizes(rt.record_index(tmp_path)) == {"kermany": {}, "kermany_full": {}, "nih": {}}


def test_paired_macro_auc_of_two_models_on_the_same_images():
    from covid_lib.metrics import macro_auc
    from covid_lib.report.pretraining import paired_macro_auc

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    good = np.eye(3)[y] * 2 + rng.normal(0, 1, (120, 3))
    bad = np.eye(3)[y] * 0.5 + rng.normal(0, 1, (120, 3))
    groups = np.arange(120) // 2
    out = paired_macro_auc(y, good, bad, groups, n_boot=300)
    assert out["auc_a"] == pytest.approx(macro_auc(y, good, n_boot=0).value)
    assert out["diff"] == pytest.approx(out["auc_a"] - out["auc_b"]) and out["diff_low"] > 0
    same = paired_macro_auc(y, good, good, groups, n_boot=100)
    assert same["diff"] == same["diff_low"] == same["diff_high"] == 0


def test_specificity_gain_plot_keeps_one_row_per_cell_whatever_the_seeds():
    """Chapter 04's forest plot: seeds sit side by side in their cell's row, so more seeds do not
    make the page taller; a pair whose model did not learn is grey."""
    from covid_lib.report.pretraining import plot_specificity_gains

    def gains(n_seeds):
        return pd.DataFrame([{"composition": c, "pretrain": p, "seed": s, "difference": 0.1, "low": 0.0,
                              "high": 0.2, "did_not_learn": s == 1}
                             for c in ("CORDA", "CORDA&RSNA") for p in ("kermany", "nih") for s in range(n_seeds)])

    one, five = plot_specificity_gains(gains(1)), plot_specificity_gains(gains(5))
    assert one.get_size_inches()[1] == five.get_size_inches()[1]
    ax = five.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["CORDA · kermany", "CORDA · nih",
                                                          "CORDA&RSNA · kermany", "CORDA&RSNA · nih"]
    assert len(ax.get_legend().get_texts()) == 5
    colours = [line.get_color() for line in ax.lines  # the points: not the error bars' caps, not the legend's
               if line.get_marker() not in ("|", "_") and len(line.get_xdata())]
    assert colours.count("tab:grey") == 4 and colours.count("tab:blue") == 16


def test_gate_summary_is_per_pipeline_and_size_and_names_resnet18_not_conv8(tmp_path):
    """Chapter 04's gate line: the whole-set ResNet-18 over its seeds, one line per pipeline and
    input size (paper pipeline at the profile's size first); a Conv8 record sorts before ResNet-18
    alphabetically and must not be read as it (the line once printed Conv8's numbers)."""
    from covid_lib.runs import RESULTS_ENV_VAR, RunArtifacts, write_artifacts

    def record(arch, seed, macro, viral, pipeline="paper", input_size=None):
        run = run_spec(dict(task="pretrain", composition="kermany_full", arch=arch, profile="cpu", seed=seed,
                            pipeline=pipeline, input_size=input_size))
        classes = {"0": {"value": 0.99}, "1": {"value": 0.88}, "2": {"value": viral}}
        files = {"spec.json": {"run_id": run.run_id, **run.identity(), "did_not_learn": False},
                 "scores.csv": _scores(np.tile([0, 1], 5), np.linspace(0, 1, 10)),
                 "history.csv": pd.DataFrame({"epoch": [1], "val_auc": [macro]}),
                 "timings.json": {"total_s": 1.0},
                 "metrics.json": {"did_not_learn": False, "best_value": macro, "num_classes": 3,
                                  "test_auc_interval": {"value": macro, "low": macro - 0.02, "high": macro + 0.02},
                                  "test_class_auc": classes}}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(RESULTS_ENV_VAR, str(tmp_path))
            write_artifacts(RunArtifacts(run, files, checkpoint=b""))

    record("conv8", 0, 0.95, 0.90)
    record("resnet18", 1, 0.89, 0.80)
    record("resnet18", 0, 0.88, 0.79)
    record("resnet18", 0, 0.94, 0.85, input_size=224)
    record("resnet18", 0, 0.91, 0.83, pipeline="none")
    lines = rp.gate_summary(rt.record_index(tmp_path))
    assert lines[0] == ("resnet18, pipeline paper, 128 px, seeds 0, 1: macro AUC 0.880 to 0.890 (gate 0.93 met at "
                        "0 of 2); normal vs pneumonia 0.990; viral vs rest 0.790 to 0.800")
    assert lines[1].startswith("resnet18, pipeline paper, 224 px, seed 0: macro AUC 0.940 (gate 0.93 met at 1 of 1)")
    assert lines[2].startswith("resnet18, pipeline none, 128 px, seed 0: macro AUC 0.910")
    assert len(lines) == 3 and not any("conv8" in x for x in lines)
    assert rp.gate_summary(rt.record_index(tmp_path / "none")) == []
