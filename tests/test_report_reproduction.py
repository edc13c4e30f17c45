"""The cross-dataset matrix, depth and ablation reports on synthetic run records.

Synthetic records (metrics.json from :func:`covid_lib.evaluate.metrics_table`, scores.csv, ...)
are written by the runs package's writer under ``COVID_LIB_RESULTS`` = ``tmp_path``, for real
:class:`RunSpec` objects, with nested test sets like the real ones
(each CORDA&X test set = the CORDA test set + X's COVID- images).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from covid_lib.report import depth as rd
from covid_lib.report import records as rr
from covid_lib.report import reproduction as rp
from covid_lib import stats
from covid_lib.evaluate import metrics_table
from covid_lib.metrics import format_estimate
from covid_lib.runs import RunArtifacts, RunSpec, results_dir, write_artifacts

COMPS = rr.TEST_SETS
EXTRA = {"CORDA&ChestXRay": "kermany", "CORDA&RSNA": "nih", "CORDA&COVID-ChestXRay": "cohen"}


def nested_sets(n_patients: int = 30) -> pd.DataFrame:
    """Image rows of the five nested test sets (two images per CORDA patient)."""
    corda = pd.DataFrame({"source": "cohen", "image_id": [f"c{i}" for i in range(2 * n_patients)],
                          "group_id": [f"cohen:{i // 2}" for i in range(2 * n_patients)],
                          "label": np.tile([1, 1, 0, 0], n_patients // 2)[: 2 * n_patients]})
    parts = [corda.assign(test_set="CORDA")]
    for comp, src in EXTRA.items():
        neg = pd.DataFrame({"source": src, "image_id": [f"{src}{i}" for i in range(20)],
                            "group_id": [f"{src}-added:{i}" for i in range(20)], "label": 0})
        parts.append(pd.concat([corda, neg]).assign(test_set=comp))
    snap = pd.DataFrame({"source": "cohen", "image_id": [f"s{i}" for i in range(15)],
                         "group_id": [f"cohen:s{i}" for i in range(15)], "label": [1] * 10 + [0] * 5})
    parts.append(snap.assign(test_set="COVID-ChestXRay"))
    out = pd.concat(parts, ignore_index=True)
    out["patient_id"] = out["group_id"]
    return out


def fake_scores(composition: str, rng: np.random.Generator, *, signal: float = 0.2, shortcut: float = 0.5,
                sets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Scores of a model trained on ``composition``: some signal on every image, and a shortcut that
    scores its own added COVID- source low and every other added source high."""
    s = nested_sets() if sets is None else sets.copy()
    own = EXTRA.get(composition)
    score = 0.35 + signal * s["label"] + rng.uniform(0, 0.3, len(s))
    added = s["source"] != "cohen"
    score = np.where(added & (s["source"] == own), score - shortcut, np.where(added, score + shortcut / 2, score))
    image_score = pd.Series(np.clip(score, 0, 1), index=s.index)
    # one score per image, whichever test set it appears in
    key = s["source"] + "/" + s["image_id"]
    s["score"] = image_score.groupby(key).transform("first")
    return s


def write_record(root, spec: RunSpec, scores: pd.DataFrame, *, did_not_learn: bool = False, drop: int = 0):
    """The record of ``spec`` written by the runs package's writer (:func:`covid_lib.runs.write_artifacts`)
    under ``root`` (``$COVID_LIB_RESULTS``); ``drop``: the chain rejected the first ``drop`` CORDA images."""
    assert Path(root) == results_dir()
    if drop:
        scores = scores[~scores["image_id"].isin([f"c{i}" for i in range(drop)])]
    cols = ["test_set", "source", "image_id", "patient_id", "group_id", "label", "score"]
    val = scores[scores["test_set"] == "CORDA"]
    table = metrics_table(scores, val, n_boot=50)
    sets = {t: {"n_expected": int((scores["test_set"] == t).sum()) + drop, "n_scored": int((scores["test_set"] == t).sum()),
                "rejected": [[f"c{i}", "mask"] for i in range(drop)] if t != "COVID-ChestXRay" else []}
            for t in COMPS}
    files = {"spec.json": {"run_id": spec.run_id, **spec.identity(), "did_not_learn": did_not_learn},
             "scores.csv": scores[cols], "history.csv": pd.DataFrame({"epoch": [1], "val_auc": [0.7]}),
             "timings.json": {"total_s": 1.0},
             "metrics.json": {"did_not_learn": did_not_learn, "table": json.loads(table.to_json(orient="records")),
                              "test_sets": sets}}
    return write_artifacts(RunArtifacts(spec, files, checkpoint=b""))


def spec(comp: str, **kw) -> RunSpec:
    return RunSpec(comp, data_version="test", **kw)


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("COVID_LIB_RESULTS", str(tmp_path))
    return tmp_path


@pytest.fixture
def table2(results):
    """Table II records: every cell done, except nih/COVID-ChestXRay missing, none/CORDA&RSNA failed,
    and none/CORDA did not learn."""
    from covid_lib import runs

    rng = np.random.default_rng(0)
    specs = [spec(c, pretrain=p) for p in (None, "kermany", "nih") for c in COMPS]
    failed = next(s for s in specs if (s.pretrain, s.composition) == (None, "CORDA&RSNA"))
    for s in specs:
        if (s.pretrain, s.composition) == ("nih", "COVID-ChestXRay"):
            continue
        if s is failed:  # a failure note (in the cache, never in the records' folder)
            runs.write_failure(s, "Traceback (most recent call last):\nRuntimeError: out of memory\n")
            continue
        write_record(results, s, fake_scores(s.composition, rng),
                     did_not_learn=(s.pretrain, s.composition) == (None, "CORDA"))
    yield rr.spec_records(specs)
    runs.clear_failure(failed.run_id)


# ------------------------------------------------------------------------------- records and table
def test_spec_records_find_by_run_id_and_say_the_status(table2, results):
    assert len(table2) == 15
    status = table2.set_index(["pretrain", "composition"])["status"]
    assert status["nih", "COVID-ChestXRay"] == "missing"
    assert status["none", "CORDA&RSNA"] == "failed"
    assert status["none", "CORDA"] == "did not learn"
    assert (status == "done").sum() == 12
    # a record of another setting in the same folder is not picked up
    write_record(results, spec("CORDA", seed=5), fake_scores("CORDA", np.random.default_rng(1)))
    assert len(rr.spec_records([spec("CORDA", pretrain="kermany")])) == 1


def test_matrix_long_reads_the_metrics_and_keeps_missing_cells(table2, results):
    long = rr.matrix_long(table2)
    assert len(long) == 15 * 5
    row = long[(long["pretrain"] == "kermany") & (long["composition"] == "CORDA&RSNA") & (long["test_set"] == "CORDA")].iloc[0]
    s = pd.read_csv(results / row["run_id"] / "scores.csv")
    s = s[s["test_set"] == "CORDA"]
    assert row["auc"] == pytest.approx(roc_auc_score(s["label"], s["score"]))
    assert row["threshold"] == 0.5 and row["n"] == len(s) and not row["diagonal"]
    missing = long[(long["pretrain"] == "nih") & (long["composition"] == "COVID-ChestXRay")]
    assert len(missing) == 5 and missing["auc"].isna().all() and (missing["status"] == "missing").all()
    tuned = rr.matrix_long(table2, threshold="validation")
    assert (tuned["threshold"].dropna() != 0.5).any()


def test_paper_long_maps_names_and_beside_paper():
    paper = rr.paper_long()
    ii = paper[paper["paper_table"] == "II"]
    assert set(ii["pretrain"]) == {"none", "kermany", "nih"} and len(ii) == 3 * 5 * 4
    assert set(paper["arch"]) == {"resnet18", "resnet50"}
    cell = paper[(paper["pretrain"] == "kermany") & (paper["composition"] == "CORDA&ChestXRay")
                 & (paper["test_set"] == "CORDA&ChestXRay") & (paper["arch"] == "resnet18")].iloc[0]
    assert cell["dor"] == pytest.approx(122.67) and cell["balanced_accuracy"] == pytest.approx(0.91)
    iv = paper[paper["paper_table"] == "IV"]
    assert len(iv) == 1 and np.isinf(iv["dor"].iloc[0]) and iv["pretrain"].iloc[0] == "kermany"


def test_matrix_table_with_paper_and_baseline(table2):
    long = rr.beside_paper(rr.matrix_long(table2))
    baseline = pd.DataFrame([{"composition": c, "test_set": t, "model": "logistic", "auc": 0.8, "auc_low": 0.7,
                              "auc_high": 0.9, "n_images": 10, "n_patients": 5} for c in COMPS for t in COMPS])
    table = rp.matrix_table(rp.with_baseline(long, baseline))
    assert len(table) == 75 and "AUC paper" in table and "metadata-only AUC" in table
    assert (table["metadata-only AUC"] == "0.80 [0.70, 0.90]").all()
    snap = table[table["tested on"] == "COVID-ChestXRay"]
    assert (snap["AUC paper"] != "–").sum() == 1  # only Table IV's cell
    assert table.loc[(table["status"] == "missing"), "AUC ours"].eq("–").all()
    without = rp.matrix_table(rp.with_baseline(long, None))
    assert without["metadata-only AUC"].eq("–").all()


def test_heatmap_inputs_and_plot(table2):
    long = rr.beside_paper(rr.matrix_long(table2))
    inputs = rp.heatmap_inputs(long, "dor")
    assert set(inputs) == {"none", "kermany", "nih"}
    none = inputs["none"]
    assert none["ours"].shape == (5, 5) and list(none["ours"].columns) == list(COMPS)
    assert none["status"].loc["CORDA", "CORDA"] == "did not learn"
    assert none["status"].loc["CORDA&RSNA", "CORDA"] == "failed" and np.isnan(none["ours"].loc["CORDA&RSNA", "CORDA"])
    assert inputs["nih"]["status"].loc["COVID-ChestXRay", "CORDA"] == "missing"
    assert none["paper"]["COVID-ChestXRay"].isna().all()
    fig = rp.plot_heatmaps(long, "dor")
    assert len(fig.axes) == 7  # 3 x 2 panels and the colour bar
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_seed_table_averages_only_the_seeds_that_learned(results):
    rng = np.random.default_rng(3)
    specs = [spec("CORDA", seed=s) for s in (0, 1, 2, 3, 4)]
    for s in specs[:2]:
        write_record(results, s, fake_scores("CORDA", rng, signal=0.2 + 0.1 * s.seed))
    write_record(results, specs[2], fake_scores("CORDA", rng, signal=0.4), did_not_learn=True)
    flat = fake_scores("CORDA", rng).assign(score=0.1)  # every score under 0.5: collapsed
    write_record(results, specs[3], flat)
    records = rr.spec_records(specs)
    assert records["status"].tolist() == ["done", "done", "did not learn", "collapsed", "missing"]
    long = rr.matrix_long(records)
    table = rp.seed_table(long, metrics=["auc"], seeds=range(5))
    row = table[table["tested on"] == "CORDA"].iloc[0]
    # by hand, on the two seeds that learned only
    aucs = [roc_auc_score(g["label"], g["score"]) for g in
            (pd.read_csv(results / s.run_id / "scores.csv").query("test_set == 'CORDA'") for s in specs[:2])]
    assert row["AUC mean ± SD"] == f"{np.mean(aucs):.2f} ± {np.std(aucs, ddof=1):.2f}"
    assert (row["seeds in the mean"], row["did not learn"], row["collapsed"], row["missing"]) == (
        "2 (seeds 0, 1)", "1 (seed 2)", "1 (seed 3)", "1 (seed 4)")
    seed0 = long[(long["seed"] == 0) & (long["test_set"] == "CORDA")].iloc[0]
    assert row["AUC seed 0 [95% CI]"] == format_estimate(seed0["auc"], seed0["auc_low"], seed0["auc_high"], 2)
    assert list(table.columns[:5]) == ["pre-training", "trained on", "tested on", "AUC mean ± SD",
                                       "AUC seed 0 [95% CI]"]
    assert rp.seed_table(long.iloc[:0]).empty


# -------------------------------------------------------------------------------------------- C1
def test_diagonal_gap_point_and_joint_bootstrap(table2):
    row = table2[(table2["pretrain"] == "kermany") & (table2["composition"] == "CORDA&ChestXRay")].iloc[0]
    gap = rp.diagonal_gap(row["path"], row["composition"], n_boot=300)
    s = pd.read_csv(row["path"] / "scores.csv")
    auc = {t: roc_auc_score(g["label"], g["score"]) for t, g in s.groupby("test_set")}
    others = [auc[t] for t in rr.PAPER_TEST_SETS if t != "CORDA&ChestXRay"]
    assert gap["auc_own"] == pytest.approx(auc["CORDA&ChestXRay"])
    assert gap["gap"] == pytest.approx(auc["CORDA&ChestXRay"] - np.mean(others))
    assert gap["gap_low"] > 0 and gap["gap_low"] < gap["gap"] < gap["gap_high"]
    assert gap["n_off_sets"] == 3 and gap["n_patients"] == 30 + 60  # patients counted once across sets


def test_c1_gap_follows_the_shortcut(table2, results):
    gaps = rp.c1_table(table2, n_boot=200)
    assert gaps.loc[gaps["status"].isin(["missing", "failed"]), "gap"].isna().all()
    paired = rp.c1_paired(table2, n_boot=100)
    on_corda = paired[(paired["test_set"] == "CORDA") & paired["diff"].notna()]
    assert len(on_corda) and (on_corda["n_common"] == 60).all()
    aug = gaps[gaps["composition"].isin(rp.AUGMENTED) & gaps["gap"].notna()]
    assert len(aug) and (aug["gap_low"] > 0).all()  # the shortcut shows as a gap

    # models without a shortcut: no gap on their own test set
    rng = np.random.default_rng(1)
    specs = [spec(c, pretrain="kermany", seed=7) for c in COMPS]
    for s in specs:
        write_record(results, s, fake_scores(s.composition, rng, shortcut=0.0))
    flat = rp.c1_table(rr.spec_records(specs), n_boot=200)
    flat_aug = flat[flat["composition"].isin(rp.AUGMENTED) & flat["gap"].notna()]
    assert len(flat_aug) and (flat_aug["gap_low"] < 0).all()  # no shortcut: no gap


# ---------------------------------------------------------------------------------------- paired
def _delong_by_hand(y, a, b):
    """Independent O(n^2) DeLong (1988) for the cross-check."""
    pos, neg = y == 1, y == 0
    def comps(s):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return psi.mean(1), psi.mean(0), psi.mean()
    va, wa, auc_a = comps(a)
    vb, wb, auc_b = comps(b)
    s10, s01 = np.cov(np.vstack([va, vb])), np.cov(np.vstack([wa, wb]))
    cov = s10 / pos.sum() + s01 / neg.sum()
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    from scipy.stats import norm
    return auc_a - auc_b, 2 * norm.sf(abs((auc_a - auc_b) / se))


def test_paired_auc_matches_delong_on_the_intersection():
    rng = np.random.default_rng(5)
    sets = nested_sets()
    a = fake_scores("CORDA", rng, sets=sets)
    b = fake_scores("CORDA", rng, signal=0.1, sets=sets)
    sa = a[a["test_set"] == "CORDA&RSNA"].set_index(["source", "image_id"])
    sb = b[b["test_set"] == "CORDA&RSNA"].set_index(["source", "image_id"]).iloc[5:]  # b lost 5 images
    out = rr.paired_auc(sa, sb, n_boot=300)
    assert (out["n_a"], out["n_b"], out["n_common"]) == (80, 75, 75)
    common = sa.loc[sb.index]
    ref = stats.delong_test(common["label"].to_numpy(), common["score"].to_numpy(), sb["score"].to_numpy())
    assert out["p"] == pytest.approx(ref.p_value) and out["diff"] == pytest.approx(ref.diff)
    diff, p = _delong_by_hand(common["label"].to_numpy(), common["score"].to_numpy(), sb["score"].to_numpy())
    assert out["diff"] == pytest.approx(diff) and out["p"] == pytest.approx(p, rel=1e-6)
    assert out["boot_low"] < out["diff"] < out["boot_high"]
    boot = stats.paired_cluster_bootstrap(common["label"], common["score"], sb["score"], common["group_id"], n_boot=300)
    assert (out["boot_low"], out["boot_high"], out["boot_p"]) == (boot.low, boot.high, boot.p_value)
    with pytest.raises(ValueError, match="label"):
        rr.paired_auc(sa, sb.assign(label=1 - sb["label"]))


# ---------------------------------------------------------------------------------- C3 and C6
def test_depth_cells_and_summary(table2, results):
    rng = np.random.default_rng(2)
    r50 = [spec(c, arch="resnet50", pretrain=p) for p in ("kermany", "nih") for c in COMPS]
    for s in r50:
        r18 = table2[(table2["pretrain"] == s.pretrain) & (table2["composition"] == s.composition)].iloc[0]
        if r18["path"] is None:
            continue
        base = pd.read_csv(r18["path"] / "scores.csv", dtype={"image_id": str})
        write_record(results, s, base.assign(score=np.clip(base["score"] + rng.normal(0, 0.01, len(base)), 0, 1)))
    cells = rd.depth_cells(rr.spec_records(r50), table2, n_boot=100)
    assert len(cells) == 10 * 5 and cells["arch"].eq("resnet50").all()
    assert cells.loc[cells["run_b"].notna(), "diff"].abs().max() < 0.05
    s = rr.paired_summary(cells)
    assert s["n_cells"] == 45 and s["n_without_pair"] == 5 and s["n_better"] + s["n_worse"] + s["n_indistinguishable"] == 45
    assert s["n_better"] == 0 and abs(s["median_diff"]) < 0.05
    assert not rd.paired_table(cells, "resnet50", "resnet18").empty


def test_paper_depth_difference():
    d = rd.paper_depth(rr.paper_long())
    cell = d[(d["pretrain"] == "kermany") & (d["composition"] == "CORDA&ChestXRay") & (d["test_set"] == "CORDA")].iloc[0]
    assert cell["paper_diff"] == pytest.approx(0.64 - 0.66)
    assert len(d) == 2 * 5 * 4


def test_ablation_on_the_intersection(table2, results):
    rng = np.random.default_rng(4)
    none = [spec(c, pretrain=p, pipeline="none") for p in (None, "kermany") for c in COMPS[:2]]
    for s in none:  # without the chain the shortcut is stronger on the other sources
        write_record(results, s, fake_scores(s.composition, rng, shortcut=0.9))
    # the chain of the kermany/CORDA record rejected 4 images
    recs = table2.copy()
    k = recs[(recs["pretrain"] == "kermany") & (recs["composition"] == "CORDA")].index[0]
    scores = pd.read_csv(recs.at[k, "path"] / "scores.csv", dtype={"image_id": str})
    import shutil
    shutil.rmtree(recs.at[k, "path"])
    write_record(results, spec("CORDA", pretrain="kermany"), scores, drop=4)
    cells = rd.ablation_cells(rr.spec_records(none), recs, n_boot=100)
    assert len(cells) == 4 * 5
    c = cells[(cells["pretrain"] == "kermany") & (cells["composition"] == "CORDA") & (cells["test_set"] == "CORDA")].iloc[0]
    assert (c["n_a"], c["n_b"], c["n_common"]) == (60, 56, 56)
    table = rd.ablation_table(rr.matrix_long(rr.spec_records(none)), rr.matrix_long(recs), cells)
    assert len(table) == 20 and {"BA no chain", "DOR chain", "ΔAUC [patient 95% CI]"} <= set(table.columns)


def test_pretraining_sizes_read_the_records(results):
    specs = [spec("CORDA", pretrain="kermany"), spec("CORDA&RSNA", pretrain="kermany"), spec("CORDA")]
    pre = specs[0].pretrain_spec()
    (results / pre.run_id).mkdir()
    (results / pre.run_id / "metrics.json").write_text(json.dumps(
        {"splits": {"train": {"n_used": 564}, "val": {"n_used": 134}, "test": {"n_used": 262}}}))
    sizes = rr.pretraining_sizes(specs)
    assert len(sizes) == 1 and sizes.iloc[0]["n train"] == 564 and sizes.iloc[0]["paper's images"] == 5857
    assert rr.pretraining_sizes([spec("CORDA", pretrain="nih")]).iloc[0]["status"] == "missing"


def test_pretraining_images_are_the_recorded_training_sizes_behind_the_grids(results, monkeypatch):
    specs = [spec("CORDA", pretrain="kermany"), spec("CORDA", pretrain="nih")]
    pre = specs[0].pretrain_spec()
    (results / pre.run_id).mkdir()
    (results / pre.run_id / "metrics.json").write_text(json.dumps(
        {"splits": {"train": {"n_used": 563}, "val": {"n_used": 134}, "test": {"n_used": 262}}}))
    monkeypatch.setattr(rr, "grid_specs", lambda grid, profile, data_root=None: specs)
    assert rr.pretraining_images(("table2", "seeds"), "cpu") == [563]  # nih not recorded: left out
    assert rr.pretraining_images(("table2",), "cpu", sources=("nih",)) == []

