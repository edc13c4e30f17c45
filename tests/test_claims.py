"""The claims' estimands under the protocol, on synthetic records: the joint patient bootstrap equals
the paired cluster bootstrap on one test set, a control that equals the model gives exactly 0, and
collapsed models are left out and counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covid_lib.analysis import claims as C
from covid_lib.report.records import spec_records
from covid_lib.runs import RunSpec
from covid_lib.stats import paired_cluster_bootstrap

TEST_SETS = C.ALL_TEST_SETS


def _scores(rng, n_patients=40, shift=1.0, collapse=False):
    rows = []
    for t in TEST_SETS:
        for i in range(n_patients):
            label = i % 2
            for k in range(1 + i % 3):  # 1-3 images per patient
                score = 1 / (1 + np.exp(-(shift * (2 * label - 1) + rng.normal())))
                rows.append({"test_set": t, "source": "cohen", "image_id": f"{t}-{i}-{k}", "patient_id": f"p{i:03d}",
                             "group_id": f"p{i:03d}", "label": label, "score": 0.3 if collapse else score})
    return pd.DataFrame(rows)


@pytest.fixture
def record(write_record):
    """``record(scores, composition=..., pretrain=None, seed=0, did_not_learn=False)``: a run's record
    written the way a run writes it, returned as its row of :func:`covid_lib.report.records.spec_records`
    (its status is the record's own: done, did not learn, collapsed)."""

    def make(scores: pd.DataFrame, *, composition: str, pretrain: str | None = None, seed: int = 0,
             did_not_learn: bool = False) -> dict:
        spec = RunSpec(composition, pretrain=pretrain, seed=seed, data_version="test")
        write_record(spec, scores, did_not_learn=did_not_learn)
        return spec_records([spec]).iloc[0].to_dict()

    return make


def test_one_pair_equals_the_paired_cluster_bootstrap(record):
    rng = np.random.default_rng(0)
    a, b = _scores(rng, shift=1.5), _scores(rng, shift=0.5)
    recs = pd.DataFrame([record(a, pretrain="kermany_full", composition="CORDA"),
                         record(b, composition="CORDA")])
    est = C.estimate_c2(recs, pretrains=("kermany_full",), compositions=("CORDA",), seeds=(0,))
    own_a, own_b = a[a["test_set"] == "CORDA"], b[b["test_set"] == "CORDA"]
    ref = paired_cluster_bootstrap(own_a["label"], own_a["score"], own_b["score"], own_a["group_id"], n_boot=2000, seed=0)
    assert est.estimate == pytest.approx(ref.estimate, abs=1e-12)
    assert (est.low, est.high) == pytest.approx((ref.low, ref.high), abs=1e-12)  # same draws: patients sorted = first seen
    assert est.n_used == 1 and est.n_left_out == 0 and est.se > 0


def test_c1_control_equal_to_the_model_gives_exactly_zero(record):
    rng = np.random.default_rng(1)
    same = _scores(rng)
    rows = [record(same, composition="CORDA")]
    rows += [record(same, composition=x) for x in C.AUGMENTED]
    est = C.estimate_c1(pd.DataFrame(rows), pretrains=("none",), seeds=(0,))
    assert est.n_used == 3 and est.estimate == 0 and est.low == 0 and est.high == 0


def test_collapsed_and_untrained_models_are_left_out_and_counted(record):
    rng = np.random.default_rng(2)
    rows = [record(_scores(rng), composition="CORDA", seed=0),
            record(_scores(rng, collapse=True), composition="CORDA", seed=0, pretrain="nih"),
            record(_scores(rng), composition="CORDA", seed=1),
            record(_scores(rng), composition="CORDA", seed=1, pretrain="nih", did_not_learn=True),
            record(_scores(rng), composition="CORDA", seed=2),
            record(_scores(rng), composition="CORDA", seed=2, pretrain="nih")]
    est = C.estimate_c2(pd.DataFrame(rows), pretrains=("nih",), compositions=("CORDA",), seeds=(0, 1, 2))
    assert est.n_used == 1 and est.n_left_out == 2
    assert est.left_out["status_a"].str.startswith("collapsed").sum() == 1
    assert (est.left_out["status_a"] == "did not learn").sum() == 1
    assert est.decision().outcome == "inconclusive"  # 1 usable comparison decides nothing


def test_by_pools_each_group_on_the_claims_draws(record):
    """ClaimEstimate.by (the per-composition rows of report.pretraining.scale_effect): each group's
    estimate is the mean of its comparisons, its interval the percentiles of the mean of their
    replicates; the pooled row is the claim's own."""
    rng = np.random.default_rng(4)
    comps = ("CORDA", "CORDA&RSNA")
    rows = [record(_scores(rng, shift=1.5 if p else 0.5), pretrain=p, composition=c, seed=s)
            for p in ("nih", None) for c in comps for s in (0, 1)]
    rows.append(record(_scores(rng), pretrain="nih", composition="CORDA&ChestXRay", seed=0))  # no scratch pair
    est = C.estimate_c2(pd.DataFrame(rows), pretrains=("nih",), compositions=(*comps, "CORDA&ChestXRay"), seeds=(0, 1))
    assert est.replicates.shape == (4, 2000) and est.n_left_out == 2
    by = est.by("composition", means=("auc_pretrained",)).set_index("composition")
    assert list(by.index) == [*comps, "pooled"]
    for c in comps:
        i = np.flatnonzero(est.cells["composition"] == c)
        mean = est.replicates[i].mean(axis=0)
        assert by.loc[c, "estimate"] == pytest.approx(est.cells["estimate"].iloc[i].mean())
        assert (by.loc[c, "low"], by.loc[c, "high"]) == pytest.approx(tuple(np.quantile(mean, [0.025, 0.975])))
        assert by.loc[c, "auc_pretrained"] == pytest.approx(est.cells["auc_pretrained"].iloc[i].mean())
        assert by.loc[c, "n_used"] == 2
    assert (by.loc["pooled", "estimate"], by.loc["pooled", "low"], by.loc["pooled", "high"]) == (
        est.estimate, est.low, est.high)


def test_c4_margin_change_against_the_random_encoder():
    rng = np.random.default_rng(3)
    rows = []
    for enc, src_acc, lab_acc in (("fine-tuned/s0", 0.95, 0.55), ("random/s0", 0.75, 0.55), ("pixels/s0", 0.9, 0.5)):
        for reading in (C.C4_SOURCE, C.C4_LABEL):
            acc = src_acc if reading == C.C4_SOURCE else lab_acc
            for i in range(120):
                target = str(i % 2)
                hit = rng.random() < acc
                rows.append({"encoder": enc, "reading": reading, "group_id": f"p{i // 2}", "target": target,
                             "predicted": target if hit else str(1 - i % 2)})
    pred = pd.DataFrame(rows)
    est = C.estimate_c4(pred, seeds=(0, 1))
    assert est.n_used == 1 and est.n_left_out == 1  # seed 1 has no encoders
    cell = est.cells.iloc[0]
    assert cell["estimate"] == pytest.approx(cell["margin_fine_tuned"] - cell["margin_random"])
    assert 0.05 < est.estimate < 0.35 and est.low < est.estimate < est.high
    assert "raw_pixels_margin" in est.extra


def test_c4_seed_table_puts_each_seed_and_their_spread_beside_the_pooled_estimate():
    """Chapter 08's seeds (issue 17): one row a seed, the left-out seed with its reason, mean ± SD
    of the per-seed changes (ddof 1), and last the protocol's pooled row, unchanged."""
    from covid_lib.report.features import c4_seed_table

    rng = np.random.default_rng(5)
    rows = []
    for seed, src_ft in ((0, 0.95), (1, 0.85), (2, 0.9)):
        for enc, src_acc in ((f"fine-tuned/s{seed}", src_ft), (f"random/s{seed}", 0.75)):
            for reading in (C.C4_SOURCE, C.C4_LABEL):
                acc = src_acc if reading == C.C4_SOURCE else 0.55
                for i in range(80):
                    target = str(i % 2)
                    rows.append({"encoder": enc, "reading": reading, "group_id": f"p{i // 2}", "target": target,
                                 "predicted": target if rng.random() < acc else str(1 - i % 2)})
    est = C.estimate_c4(pd.DataFrame(rows), seeds=(0, 1, 2, 3), unusable={3: "retrained here, differs from record"})
    table = c4_seed_table(est).set_index("seed")
    assert list(table.index) == ["0", "1", "2", "3", "mean ± SD", "pooled (decides)"]
    changes = est.cells["estimate"].to_numpy()
    assert table.loc["mean ± SD", "change [95% CI]"] == f"{changes.mean():.3f} ± {changes.std(ddof=1):.3f}"
    assert table.loc["pooled (decides)", "change [95% CI]"].startswith(f"{est.estimate:.3f} [{est.low:.3f}, ")
    assert table.loc["3", "role"] == "left out: retrained here, differs from record; missing"  # neither encoder here
    assert table.loc["1", "change [95% CI]"].startswith(f"{changes[1]:.3f} [")
    assert c4_seed_table(None).empty
