"""The whole ChestXRay set as a pre-training source (issue 17): one patient-level split across the
two copies, no composition val/test patient in a pre-training set, and the data version of runs
that use it."""

from __future__ import annotations

import pandas as pd
import pytest

from covid_lib.data import PRETRAIN_ONLY_SOURCES, STUDY_SOURCES, SplitLeakError
from covid_lib.data.full_copy import HELD_OUT, assign_copy_splits, audit_pretraining
from covid_lib.runs import RunSpec


def _base() -> pd.DataFrame:
    return pd.DataFrame({"source": ["kermany"] * 3 + ["cohen"],
                         "patient_id": ["kermany:A", "kermany:B", "kermany:C", "cohen:1"],
                         "image_id": ["train-a", "test-b", "train-c", "x"],
                         "split": ["train", "test", "val", "test"]})


def _full(n_free: int = 40) -> pd.DataFrame:
    patients = ["kermany:A", "kermany:B", "kermany:C"] + [f"kermany:F{i}" for i in range(n_free)]
    classes = ["normal", "bacteria", "virus"]
    return pd.DataFrame({"source": "kermany_full", "patient_id": patients,
                         "image_id": ["train-a", "test-b", "train-c"] + [f"train-f{i}" for i in range(n_free)],
                         "kermany_class": [classes[i % 3] for i in range(len(patients))]})


def test_copy_patients_keep_their_split_or_are_held_out():
    out = assign_copy_splits(_full(), _base(), seed=0).set_index("patient_id")
    assert out.loc["kermany:A", "split"] == "train"
    assert out.loc["kermany:B", "split"] == HELD_OUT and "test" in out.loc["kermany:B", "split_reason"]
    assert out.loc["kermany:C", "split"] == HELD_OUT and "val" in out.loc["kermany:C", "split_reason"]
    free = out[out.index.str.startswith("kermany:F")]
    assert set(free["split"]) == {"train", "val", "test"}
    assert (free["split"] == "train").sum() > (free["split"] == "test").sum()


def test_a_picture_shared_with_a_test_patient_holds_its_patient_out():
    full = _full()
    f7 = int(full.index[full["patient_id"] == "kermany:F7"][0])
    pairs = pd.DataFrame({"i": [1], "j": [f7]})  # F7's image is B's picture: one group
    out = assign_copy_splits(full, _base(), seed=0, pairs=pairs).set_index("patient_id")
    assert out.loc["kermany:F7", "split"] == HELD_OUT


def test_split_is_seeded_and_by_patient():
    a = assign_copy_splits(_full(), _base(), seed=0)
    b = assign_copy_splits(_full(), _base(), seed=0)
    c = assign_copy_splits(_full(), _base(), seed=1)
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != c["split"].tolist()


def test_audit_fails_on_a_pretraining_test_overlap_and_names_same_radiographs():
    splits = _base()
    ok = assign_copy_splits(_full(), splits, seed=0).query("split != @HELD_OUT")
    report = audit_pretraining(ok, splits)
    assert len(report["leaks"]) == 0
    assert report["same_radiograph"]["image_id"].tolist() == ["train-a"]  # in both copies, not a leak
    leaking = pd.concat([ok, assign_copy_splits(_full(), splits).query("patient_id == 'kermany:B'")])
    with pytest.raises(SplitLeakError, match="pre-training leak"):
        audit_pretraining(leaking, splits)


def test_runs_on_the_whole_set_hash_its_data_but_others_do_not():
    assert RunSpec("CORDA", pretrain="kermany").data_sources() == STUDY_SOURCES
    assert RunSpec("CORDA").data_sources() == STUDY_SOURCES
    assert RunSpec("CORDA", pretrain="kermany_full").data_sources() == STUDY_SOURCES + PRETRAIN_ONLY_SOURCES
    assert RunSpec("kermany_full", task="pretrain").data_sources() == STUDY_SOURCES + PRETRAIN_ONLY_SOURCES


@pytest.mark.data
def test_default_data_version_is_the_six_study_sources(data_root):
    from covid_lib.data import data_version

    assert data_version(data_root) == data_version(data_root, sources=STUDY_SOURCES)
    assert data_version(data_root) != data_version(data_root, sources=STUDY_SOURCES + PRETRAIN_ONLY_SOURCES)


@pytest.mark.slow
@pytest.mark.data
def test_real_pretraining_set_has_no_composition_val_or_test_patient(data_root):
    from covid_lib.data import global_splits, pretrain_rows

    rows = pretrain_rows("kermany_full", data_root)
    report = audit_pretraining(rows, global_splits(data_root))
    assert len(report["leaks"]) == 0 and len(report["same_radiograph"]) > 0
    assert set(rows["split"]) == {"train", "val", "test"} and len(rows) > 4000


@pytest.mark.slow
@pytest.mark.data
def test_a_probe_tells_the_two_copies_apart_on_raw_pixels(data_root):
    from covid_lib.analysis.shortcuts import copy_probe, copy_rows

    rows = copy_rows(data_root, limit=24)
    assert (rows.groupby("pair")["copy"].apply(sorted) == pd.Series([[0, 1]] * 24, index=sorted(set(rows["pair"])))).all()
    assert (rows["orig_aspect"] > 1).mean() > 0.9  # landscape originals, squashed to a square in kermany_full
    table = copy_probe(rows, data_root=data_root, steps={"raw": "none"}, n_boot=100)
    assert table.loc[0, "auc"] > 0.9 and table.loc[0, "radiographs"] == 24
