"""Data layer: loading and validation (synthetic roots), splits and audit, compositions (real data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from covid_lib.data import (
    DataError,
    ImageReadError,
    SplitLeakError,
    assign_splits,
    audit_splits,
    data_version,
    load_source,
    read_image,
)
from covid_lib.data.compose import (COMPOSITIONS, SNAPSHOT_TEST, compose, counts_in_test, global_splits, table_one,
                                     table_one_wide)
from covid_lib.paths import DataRootError, resolve_data_root

HEADER = ("image_id,path,mask_path,patient_id,source,covid,finding,view,sex,age,date,location,first_seen,"
          "license,origin,orig_width,orig_height,orig_mode,orig_format,width,height")


def _xray(seed: int, size=(40, 32)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)


def _write_cohen_like(root: Path, rows: list[dict]) -> Path:
    folder = root / "cohen"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    lines = [HEADER]
    for i, r in enumerate(rows):
        image_id = r.get("image_id", f"img{i}")
        size = r.get("size", (40, 32))
        if r.get("write", True):
            Image.fromarray(r.get("pixels", _xray(i, size))).save(folder / "images" / f"{image_id}.png")
        mask = ""
        if "mask_size" in r:
            mask = f"masks/{image_id}.png"
            Image.fromarray(np.zeros(r["mask_size"][::-1], np.uint8)).save(folder / mask)
        lines.append(",".join([
            image_id, f"images/{image_id}.png", mask, r.get("patient", f"cohen:{i}"), "cohen",
            str(r.get("covid", 1)), "COVID-19", r.get("view", "PA"), "M", "50", "", "", "2020-03-01",
            "", "test", "80", "64", "L", "PNG", str(size[0]), str(size[1])]))
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


# --- data root and structural errors -------------------------------------------------------------

def test_missing_root_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("COVID_LIB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataRootError, match="nowhere.*--data-root.*data_root=.*COVID_LIB_DATA.*download"):
        resolve_data_root()


def test_argument_beats_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COVID_LIB_DATA", str(tmp_path / "nowhere"))
    assert resolve_data_root(tmp_path) == tmp_path.resolve()


def test_missing_source_names_the_download_command(tmp_path):
    with pytest.raises(DataError, match="hannover.*data download hannover"):
        load_source("hannover", tmp_path)


def test_unknown_source(tmp_path):
    with pytest.raises(DataError, match="unknown source 'corda'"):
        load_source("corda", tmp_path)


def test_missing_column(tmp_path):
    folder = _write_cohen_like(tmp_path, [{}])
    df = pd.read_csv(folder / "manifest.csv", dtype=str).drop(columns=["covid"])
    df.to_csv(folder / "manifest.csv", index=False)
    with pytest.raises(DataError, match="missing column.*covid"):
        load_source("cohen", tmp_path)


def test_label_out_of_range(tmp_path):
    _write_cohen_like(tmp_path, [{"covid": 1}, {"covid": 2}])
    with pytest.raises(DataError, match="1 row.*'covid' outside \\['0', '1'\\]"):
        load_source("cohen", tmp_path)


def test_required_label_missing(tmp_path):
    _write_cohen_like(tmp_path, [{"covid": ""}])
    with pytest.raises(DataError, match="required"):
        load_source("cohen", tmp_path)


# --- per-image problems are excluded with a reason, never silently ------------------------------

def test_every_exclusion_has_a_reason(tmp_path):
    rows = [
        {"image_id": "ok", "mask_size": (40, 32)},
        {"image_id": "gone", "write": False},
        {"image_id": "lateral", "view": "L"},
        {"image_id": "badmask", "mask_size": (20, 20)},
        {"image_id": "wrongsize", "size": (40, 32)},
        {"image_id": "ok", "patient": "cohen:99"},  # duplicate row under another patient
        {"image_id": "corrupt"},
    ]
    folder = _write_cohen_like(tmp_path, rows)
    (folder / "images" / "corrupt.png").write_bytes(b"not a png at all")
    Image.fromarray(_xray(0, (50, 50))).save(folder / "images" / "wrongsize.png")

    loaded = load_source("cohen", tmp_path, views="frontal")
    assert loaded.manifest["image_id"].tolist() == ["ok"]
    reasons = dict(zip(loaded.exclusions["image_id"], loaded.exclusions["reason"]))
    assert reasons["gone"].startswith("image file missing")
    assert reasons["lateral"] == "L view (frontal asked)"
    assert reasons["badmask"].startswith("mask size 20x20 differs")
    assert reasons["wrongsize"].startswith("image size 50x50 differs")
    assert reasons["ok"].startswith("duplicate row") and "cohen:0" in reasons["ok"]
    assert reasons["corrupt"].startswith("unreadable image images/corrupt.png: ")
    assert len(loaded.manifest) + len(loaded.exclusions) == len(rows)

    assert "lateral" in load_source("cohen", tmp_path, views="all").manifest["image_id"].tolist()
    with pytest.raises(DataError, match="unusable file"):
        load_source("cohen", tmp_path, strict=True)


def test_loaded_schema(tmp_path):
    _write_cohen_like(tmp_path, [{"mask_size": (40, 32)}, {"covid": 0}])
    m = load_source("cohen", tmp_path).manifest
    assert Path(m.loc[0, "image_path"]).is_absolute() and Path(m.loc[0, "mask_path"]).is_file()
    assert pd.isna(m.loc[1, "mask_path"])
    assert str(m["covid"].dtype) == "Int8" and m["covid"].tolist() == [1, 0]
    assert m["pneumonia"].isna().all() and m["frontal"].all()


def test_read_image_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageReadError, match="cannot decode"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="missing"):
        read_image(tmp_path / "none.png")


def test_read_image_scales_16_bit(tmp_path):
    arr = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255


# --- splits and audit (synthetic) ----------------------------------------------------------------

def _split_root(tmp_path, n_patients=40, per_patient=2):
    rows = [{"image_id": f"p{p}i{k}", "patient": f"cohen:{p}", "covid": int(p % 3 != 0)}
            for p in range(n_patients) for k in range(per_patient)]
    for i, r in enumerate(rows):
        r["pixels"] = _xray(1000 + i)
    _write_cohen_like(tmp_path, rows)
    return load_source("cohen", tmp_path).manifest


def test_splits_are_patient_level_seeded_and_stratified(tmp_path):
    m = _split_root(tmp_path)
    a = assign_splits(m, seed=3)
    assert set(a["split"]) == {"train", "val", "test"}
    assert (a.groupby("patient_id")["split"].nunique() == 1).all()
    assert a["split"].tolist() == assign_splits(m, seed=3)["split"].tolist()
    assert a["split"].tolist() != assign_splits(m, seed=4)["split"].tolist()
    test_patients = a.loc[a["split"] == "test", "patient_id"].nunique()
    assert test_patients == 12  # 30% of 40 patients
    per_split_rate = a.groupby("split")["covid"].mean()
    assert per_split_rate.max() - per_split_rate.min() < 0.2
    audit_splits(a)  # no leak


def test_audit_catches_planted_leak_and_duplicate(tmp_path):
    m = _split_root(tmp_path)
    a = assign_splits(m, seed=0)
    # a patient leak: move one image of a test patient to train
    leaked = a.copy()
    idx = leaked.index[leaked["split"] == "test"][0]
    leaked.loc[idx, "split"] = "train"
    with pytest.raises(SplitLeakError, match="patients in more than one split: 1"):
        audit_splits(leaked)
    # an identical image under another patient id, placed in another split
    dup = a.copy()
    test_row = dup[dup["split"] == "test"].iloc[0]
    train_idx = dup.index[dup["split"] == "train"][0]
    shutil.copy(test_row["image_path"], dup.loc[train_idx, "image_path"])
    with pytest.raises(SplitLeakError, match="1 across splits"):
        audit_splits(dup)
    report = audit_splits(dup, raise_on_leak=False)
    assert len(report.exact_across) == 1 and not report.exact_across["same_patient"].any()


def test_splits_join_patients_sharing_an_image(tmp_path):
    m = _split_root(tmp_path, n_patients=20, per_patient=1)
    shutil.copy(m.loc[0, "image_path"], m.loc[1, "image_path"])  # patients 0 and 1 share an image
    a = assign_splits(m, seed=0)
    assert a.loc[0, "group_id"] == a.loc[1, "group_id"] and a.loc[0, "split"] == a.loc[1, "split"]
    audit_splits(a)


# --- real data ----------------------------------------------------------------------------------

@pytest.mark.data
def test_real_sources_load_with_reported_exclusions(data_root):
    cohen = load_source("cohen", data_root, views="frontal")
    reasons = cohen.exclusions["reason"]
    assert reasons.str.startswith("duplicate row").sum() == 5
    assert reasons.str.contains("frontal asked").sum() == 43  # 44 lateral, one is also a duplicate row
    assert len(cohen.manifest) + len(cohen.exclusions) == 575  # nothing dropped silently
    assert len(cohen.manifest) == 527
    assert len(data_version(data_root)) == 12


@pytest.mark.data
def test_every_real_image_decodes_in_full(data_root):
    from covid_lib.data import load_sources

    loaded = load_sources(data_root=data_root, views="all")
    assert len(loaded.manifest) == 3477
    assert loaded.exclusions["reason"].str.startswith("duplicate row").all()  # no file problem at all


@pytest.mark.data
def test_real_splits_pass_the_audit_and_join_hannover_copies(data_root):
    splits = global_splits(data_root, seed=0)
    audit_splits(splits)
    assert (splits.groupby("patient_id")["split"].nunique() == 1).all()
    copies = splits[splits["source"].isin(["cohen", "hannover"])].groupby("image_id")["split"].nunique()
    assert (copies == 1).all()  # the Cohen copies of Hannover images share their split
    judged = splits[splits["patient_id"].isin(["cohen:137", "cohen:202"])]
    assert len(judged) >= 2 and judged["group_id"].nunique() == 1 and judged["split"].nunique() == 1
    fractions = splits.groupby("split").size() / len(splits)
    assert 0.25 < fractions["test"] < 0.35


@pytest.mark.data
@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_compositions_pass_the_audit(data_root, name):
    composed = compose(name, data_root, seed=0)
    audit_splits(composed)
    train = composed[composed["split"] == "train"]["label"].value_counts()
    if name != "COVID-ChestXRay":
        assert train[0] == train[1], "training sets are balanced"
    test = composed[composed["split"] == "test"]
    if "COVID-ChestXRay" in name:
        snap = test[test["set"] == "COVID-ChestXRay"]["label"].value_counts().to_dict()
        assert snap == SNAPSHOT_TEST and snap == {1: 10, 0: 5}
    assert counts_in_test(name, data_root) == {1: int((test["label"] == 1).sum()), 0: int((test["label"] == 0).sum())}


@pytest.mark.data
def test_no_image_is_tested_in_one_composition_and_trained_in_another(data_root):
    parts = pd.concat([compose(n, data_root, seed=0) for n in COMPOSITIONS])
    per_image = parts.groupby("image_path")["split"].nunique()
    assert (per_image == 1).all()


@pytest.mark.data
def test_table_one_beside_the_paper(data_root):
    long = table_one(data_root, seed=0)
    row = long[(long["composition"] == "COVID-ChestXRay") & (long["split"] == "test")]
    assert row.set_index("label")["ours"].to_dict() == {1: 10, 0: 5}
    assert row.set_index("label")["paper"].to_dict() == {1: 10, 0: 5}
    wide = table_one_wide(long)
    assert wide.loc[("CORDA&ChestXRay", "test"), "total COVID+"].endswith("(90)")


@pytest.mark.data
def test_one_named_loader_per_source(data_root):
    import covid_lib.data as data

    for name in data.SOURCES:
        loaded = getattr(data, f"load_{name}")(data_root, verify=False)
        assert loaded.name == name and (loaded.manifest["source"] == name).all()
        assert name in getattr(data, f"load_{name}").__doc__


@pytest.mark.data
def test_compose_csv_lists_each_image_split_as_compose_assigns_it(data_root, tmp_path, capsys):
    """``data compose all --csv``: one row per image and composition, the split and label that
    :func:`compose` gives it, no absolute path (the file is meant to be shared and diffed)."""
    from covid_lib.cli import main

    out = tmp_path / "sub" / "membership.csv"
    assert main(["data", "compose", "all", "--data-root", str(data_root), "--csv", str(out)]) == 0
    assert f"to {out}" in capsys.readouterr().out
    written = pd.read_csv(out, dtype=str)
    assert list(written.columns) == ["composition", "source", "image_id", "patient_id", "group_id", "set",
                                     "split", "label"]
    assert not written.apply(lambda col: col.str.contains(str(data_root), regex=False)).any().any()
    for name in COMPOSITIONS:
        composed = compose(name, data_root, seed=0)
        mine = written[written["composition"] == name].set_index(["source", "image_id"])
        theirs = composed.set_index(["source", "image_id"])
        assert len(mine) == len(theirs) and mine.index.is_unique
        assert (mine.loc[theirs.index, "split"] == theirs["split"].to_numpy()).all()
        assert (mine.loc[theirs.index, "label"].astype(int) == theirs["label"].astype(int).to_numpy()).all()
