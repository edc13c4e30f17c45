"""The resolution check (issue 17, :mod:`covid_lib.report.resolution`) on synthetic records: C1's and
C2's rules applied to the same cells at 128 and 224 px, the paired size effect, and the dating."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covid_lib.analysis import claims as C
from covid_lib.grid import RESOLUTION_SIZE
from covid_lib.report import resolution as R
from covid_lib.report.records import spec_records
from covid_lib.runs import RunSpec


def _scores(rng: np.random.Generator, shift: float, n_patients: int = 40) -> pd.DataFrame:
    rows = []
    for t in C.ALL_TEST_SETS:
        for i in range(n_patients):
            label = i % 2
            for k in range(1 + i % 2):
                score = 1 / (1 + np.exp(-(shift * (2 * label - 1) + rng.normal())))
                rows.append({"test_set": t, "source": "cohen", "image_id": f"{t}-{i}-{k}", "patient_id": f"p{i:03d}",
                             "group_id": f"p{i:03d}", "label": label, "score": score})
    return pd.DataFrame(rows)


@pytest.fixture
def cells(write_record):
    """``cells(shift)``: every cell of the check recorded at both sizes; ``shift(size, pretrain)`` sets
    how far apart the classes' scores are (the model's skill); scores are redrawn per size unless
    ``same`` (then the 224-px model scores exactly as its 128-px twin)."""

    def make(shift, *, same: bool = False, sizes=(128, RESOLUTION_SIZE)) -> pd.DataFrame:
        frames = []
        for size in sizes:
            rng = np.random.default_rng(0 if same else size)
            specs = []
            for comp in R.COMPOSITIONS:
                for p in R.PRETRAINS:
                    for seed in R.SEEDS:
                        spec = RunSpec(comp, pretrain=None if p == "none" else p, seed=seed, data_version="test",
                                       input_size=None if size == 128 else size)
                        write_record(spec, _scores(rng, shift(size, p)))
                        specs.append(spec)
            frames.append(spec_records(specs).assign(input_size=size))
        return pd.concat(frames, ignore_index=True)

    return make


def test_identical_models_at_both_sizes_change_nothing(cells):
    recs = cells(lambda size, p: 1.5 if p == "kermany_full" else 0.5, same=True)
    verdicts = R.cell_verdicts(recs)
    assert set(verdicts["claim"]) == {"C1", "C2"} and not verdicts["changes"].any()
    assert (verdicts["n_used"] == 6).all() and (verdicts["n_left_out"] == 0).all()
    c2 = verdicts[verdicts["claim"] == "C2"]
    assert (c2["outcome"] == "reproduced").all()  # pre-training clearly helps at both sizes
    effect = R.size_effect(recs)
    assert effect.n_used == 12 and effect.estimate == 0 and effect.low == 0 and effect.high == 0
    assert R.summary(verdicts, effect).startswith("No verdict on these cells changes with the input size (C1, C2)")


def test_a_verdict_that_flips_with_the_size_is_flagged(cells):
    # at 128 px pre-training helps; at 224 px it hurts: C2's outcome must differ between the sizes
    recs = cells(lambda size, p: (1.6 if p == "kermany_full" else 0.3) if size == 128 else
                 (0.3 if p == "kermany_full" else 1.6))
    verdicts = R.cell_verdicts(recs).set_index(["claim", "input_size"])
    assert verdicts.loc[("C2", 128), "outcome"] == "reproduced"
    assert verdicts.loc[("C2", RESOLUTION_SIZE), "outcome"] == "not reproduced"
    assert verdicts.loc[("C2", 128), "changes"] == True and verdicts.loc[("C2", RESOLUTION_SIZE), "changes"] == True  # noqa: E712
    assert "The outcome of C2 on these cells changes" in R.summary(R.cell_verdicts(recs), R.size_effect(recs))
    table = R.verdict_table(R.cell_verdicts(recs)).set_index("claim")
    assert table.loc["C2", "outcome changes with the size"] == "yes"
    assert table.loc["C2", "224 px: used / left out"] == "6 / 0"


def test_the_size_effect_pairs_each_cell_with_its_twin(cells):
    recs = cells(lambda size, p: 2.0 if size == RESOLUTION_SIZE else 0.4)
    effect = R.size_effect(recs)
    assert effect.n_used == 12 and effect.low > 0  # 224 px separates the classes far better here
    row = effect.cells.iloc[0]
    assert row["estimate"] == pytest.approx(row["auc_224"] - row["auc_128"])
    fig = R.plot_size_effect(effect)
    assert len(fig.axes[0].get_yticklabels()) == 12


def test_cells_missing_at_one_size_are_left_out_and_counted(cells):
    recs = cells(lambda size, p: 1.0, sizes=(128,))
    missing = recs.assign(input_size=RESOLUTION_SIZE, status="missing", path=None,
                          run_id=recs["run_id"] + "-224")
    both = pd.concat([recs, missing], ignore_index=True)
    effect = R.size_effect(both)
    assert effect.n_used == 0 and effect.n_left_out == 12 and (effect.left_out["status_a"] == "missing").all()
    verdicts = R.cell_verdicts(both).set_index(["claim", "input_size"])
    assert verdicts.loc[("C1", RESOLUTION_SIZE), "outcome"] == "inconclusive"
    assert verdicts.loc[("C1", RESOLUTION_SIZE), "n_left_out"] == 6
    assert verdicts["changes"].isna().all()  # not final while runs are missing
    assert R.verdict_table(R.cell_verdicts(both))["outcome changes with the size"].eq("not yet: runs missing").all()
    text = R.summary(R.cell_verdicts(both), effect)
    assert "C1, C2 cannot be compared yet" in text and "no cell has a usable model at both sizes" in text
    with pytest.raises(ValueError, match="two input sizes"):
        R.size_effect(recs)


def test_records_after_counts_the_224_px_records_made_after_the_check(cells):
    recs = cells(lambda size, p: 1.0)
    n_after, n = R.records_after(recs, "2000-01-01T00:00:00+00:00")
    assert (n_after, n) == (12, 12)
    assert R.records_after(recs, "2999-01-01T00:00:00+01:00") == (0, 12)
    assert R.records_after(recs, None) == (0, 12)


def test_resolution_records_pairs_the_grid_with_its_table2_full_twins(tmp_path):
    recs = R.resolution_records("cpu", results=tmp_path, data_version="x")
    assert len(recs) == 24 and sorted(recs["input_size"].unique()) == [128, RESOLUTION_SIZE]
    assert (recs["status"] == "missing").all()
    keys = ["composition", "pretrain", "seed"]
    low, high = (recs[recs["input_size"] == s].set_index(keys).sort_index() for s in (128, RESOLUTION_SIZE))
    assert list(low.index) == list(high.index)
    assert not set(low["run_id"]) & set(high["run_id"])


def test_the_fp32_pilot_pairs_the_from_scratch_twins_of_both_sizes(tmp_path, data_root):
    """The pilot's records: the fp32 twins of the grid's from-scratch cells at 224 px beside the fp32
    twins of the same cells at 128 px (the precision control's), no pre-trained cell."""
    from dataclasses import replace

    from covid_lib.grid import grid_specs

    recs = R.pilot_records("cpu", data_root=data_root, results=tmp_path)
    assert len(recs) == 12 and set(recs["pretrain"]) == {"none"} and (recs["status"] == "missing").all()
    high = [replace(s, precision="fp32").run_id for s in grid_specs("resolution", "cpu", data_root=data_root)
            if s.task == "covid" and s.pretrain is None]
    assert set(recs.loc[recs["input_size"] == RESOLUTION_SIZE, "run_id"]) == set(high)
    keys = ["composition", "seed"]
    low, hi = (recs[recs["input_size"] == s].set_index(keys).sort_index() for s in (128, RESOLUTION_SIZE))
    assert list(low.index) == list(hi.index) and not set(low["run_id"]) & set(hi["run_id"])


def test_from_scratch_cells_alone_apply_c1_only(cells):
    recs = cells(lambda size, p: 1.0)
    scratch = recs[recs["pretrain"] == "none"]
    verdicts = R.cell_verdicts(scratch, pretrains=("none",))
    assert set(verdicts["claim"]) == {"C1"} and (verdicts["n_used"] == 3).all()
    assert R.size_effect(scratch, pretrains=("none",)).n_used == 6
