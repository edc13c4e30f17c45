"""The precision control (fp32 twins against bf16 records, :mod:`covid_lib.analysis.precision`): its
equivalence rule, the paired estimate on synthetic records (identical twins give exactly 0, shifted
twins are flagged, collapsed twins are left out and counted), the noise floor and the statuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covid_lib.analysis import precision as PC
from covid_lib.report.precision import precision_markdown
from covid_lib.report.records import spec_records
from covid_lib.runs import RunSpec
from test_claims import _scores as claim_scores


@pytest.mark.parametrize("low, high, used, left, outcome", [
    (-0.02, 0.03, 10, 0, "negligible"),
    (0.06, 0.20, 10, 0, "matters"),
    (-0.30, -0.07, 10, 0, "matters"),
    (-0.01, 0.08, 10, 0, "inconclusive"),  # reaches the margin
    (-0.02, 0.03, 2, 0, "inconclusive"),  # too few pairs
    (-0.02, 0.03, 4, 5, "inconclusive"),  # more than half left out
    (float("nan"), float("nan"), 5, 0, "inconclusive"),
])
def test_the_equivalence_rule(low, high, used, left, outcome):
    assert PC.decide_equivalence(low, high, n_used=used, n_left_out=left)[0] == outcome


def _scores(rng, composition, *, shift=1.0, collapse=False):
    """Synthetic scores on ``composition``'s test set (:func:`test_claims._scores`, that set only)."""
    scores = claim_scores(rng, shift=shift, collapse=collapse)
    return scores[scores["test_set"] == composition].reset_index(drop=True)


@pytest.fixture
def twins(write_record):
    """``twins(bf16_scores, fp32_scores, composition, seed, did_not_learn=(False, False))``: the two
    records of one cell, as :func:`covid_lib.report.precision.precision_records` rows."""

    def make(a: pd.DataFrame, b: pd.DataFrame, composition: str, seed: int, did_not_learn=(False, False)):
        rows = []
        for precision, scores, dnl in (("bf16", a, did_not_learn[0]), ("fp32", b, did_not_learn[1])):
            spec = RunSpec(composition, arch="conv8", seed=seed, data_version="test",
                           precision=None if precision == "bf16" else "fp32")
            write_record(spec, scores, did_not_learn=dnl)
            rows.append(spec_records([spec]).assign(precision=precision))
        return pd.concat(rows, ignore_index=True)

    return make


def test_identical_twins_give_exactly_zero_and_are_negligible(twins):
    rng = np.random.default_rng(0)
    cells = [twins(s, s, "CORDA", seed) for seed, s in enumerate(_scores(rng, "CORDA") for _ in range(3))]
    control = PC.estimate_precision(pd.concat(cells, ignore_index=True))
    e = control.estimate
    assert (e.estimate, e.low, e.high, e.n_used, e.n_left_out) == (0, 0, 0, 3, 0)
    assert control.outcome == "negligible"
    noise = control.noise.set_index("difference")["mean_abs_auc_diff"]
    assert noise.iloc[0] == 0
    aucs = e.cells["auc_bf16"].to_numpy()  # the three seeds' AUCs: the floor is their mean pairwise gap
    gaps = [abs(aucs[0] - aucs[1]), abs(aucs[0] - aucs[2]), abs(aucs[1] - aucs[2])]
    assert noise.iloc[1] == pytest.approx(np.mean(gaps)) and noise.iloc[2] == pytest.approx(np.mean(gaps))


def test_a_precision_that_moves_the_auc_is_flagged(twins):
    rng = np.random.default_rng(1)
    cells = [twins(_scores(rng, "CORDA", shift=2.5), _scores(rng, "CORDA", shift=0.2), "CORDA", seed)
             for seed in range(4)]
    control = PC.estimate_precision(pd.concat(cells, ignore_index=True))
    assert control.estimate.high < -PC.MARGIN and control.outcome == "matters"
    assert control.mde > 0 and "matters" in control.summary()


def test_collapsed_or_untrained_twins_are_left_out_counted_and_crossed(twins):
    rng = np.random.default_rng(2)
    cells = [twins(_scores(rng, "CORDA"), _scores(rng, "CORDA"), "CORDA", 0),
             twins(_scores(rng, "CORDA"), _scores(rng, "CORDA", collapse=True), "CORDA", 1),
             twins(_scores(rng, "CORDA"), _scores(rng, "CORDA"), "CORDA", 2, did_not_learn=(True, False))]
    records = pd.concat(cells, ignore_index=True)
    control = PC.estimate_precision(records)
    assert (control.estimate.n_used, control.estimate.n_left_out) == (1, 2)
    assert control.outcome == "inconclusive"
    statuses = control.statuses
    assert statuses.loc["done", "done"] == 1 and statuses.loc["done", "collapsed"] == 1
    assert statuses.loc["did not learn", "done"] == 1 and statuses.to_numpy().sum() == 3
    page = precision_markdown(control, arm="conv8", machine="test CPU")
    assert "**inconclusive**" in page and "## Pairs left out" in page and "test CPU" in page


def test_a_cell_without_its_twin_is_left_out_as_missing(twins, write_record):
    rng = np.random.default_rng(3)
    records = twins(_scores(rng, "CORDA"), _scores(rng, "CORDA"), "CORDA", 0)
    lone = RunSpec("CORDA", arch="conv8", seed=1, data_version="test")
    write_record(lone, _scores(rng, "CORDA"))
    records = pd.concat([records, spec_records([lone]).assign(precision="bf16")], ignore_index=True)
    control = PC.estimate_precision(records)
    assert (control.estimate.n_used, control.estimate.n_left_out) == (1, 1)
    assert control.estimate.left_out["status_a"].tolist() == ["missing"]
    assert control.statuses.loc["done", "missing"] == 1


@pytest.mark.data
@pytest.mark.parametrize("arm, n", [("conv8", 30), ("resnet18", 15), ("resnet50", 5), ("resnet50_563", 5)])
def test_the_records_pair_each_run_of_an_arm_with_its_fp32_twin(data_root, arm, n):
    """On the committed records: every COVID run of the arm once in bf16 (recorded) and once as its
    twin, the twin's run id another one and its spec the same but for the precision."""
    from dataclasses import replace

    from covid_lib.report.precision import ARMS, precision_records

    records = precision_records(arm, data_root=data_root)
    bf16, fp32 = records[records["precision"] == "bf16"], records[records["precision"] == "fp32"]
    assert len(bf16) == len(fp32) == n
    assert (bf16["status"] != "missing").all()
    assert set(bf16["run_id"]).isdisjoint(fp32["run_id"])
    covid = [s for s in ARMS[arm].specs(data_root=data_root) if s.task == "covid"]
    assert set(fp32["run_id"]) == {replace(s, precision="fp32").run_id for s in covid}
    if arm == "resnet18":
        assert set(bf16["pretrain"]) == {"none"} and set(bf16["seed"]) == {0, 1, 2}
    if arm.startswith("resnet50"):
        assert set(bf16["pretrain"]) == {"nih" if arm == "resnet50" else "kermany"} and set(bf16["seed"]) == {0}
        assert any(s.task == "pretrain" for s in ARMS[arm].specs(data_root=data_root))  # its twin pre-trains too
