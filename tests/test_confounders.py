"""Confounder tables per composition (covid_lib.data.confounders) on synthetic frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covid_lib.data import confounders as cf


def _rows(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    return pd.DataFrame({
        "composition": "X", "image_id": [f"i{i}" for i in range(n)],
        "patient_id": [f"p{i // 2}" for i in range(n)], "group_id": [f"p{i // 2}" for i in range(n)],
        "split": rng.choice(["train", "val", "test"], n), "label": label, "covid": label,
        "source": np.where(label == 1, "cohen", "kermany"),
        "view": np.where(label == 1, "AP", "PA"),
        "date": np.where(label == 1, "March 5, 2020", ""),
        "age": np.where(label == 1, "65.0", ""), "sex": np.where(label == 1, "M", "f"),
        "orig_width": rng.integers(300, 3000, n), "orig_height": rng.integers(300, 3000, n),
        "orig_format": np.where(label == 1, "PNG", "JPEG"), "orig_mode": "L",
    })


@pytest.mark.parametrize("text, year", [
    ("2018", 2018), ("May 4, 2010", 2010), ("03/09/20", 2020), ("2/29/2020", 2020), ("11/27/19", 2019),
    ("December 27, 2019", 2019), ("March 2003", 2003), ("January 12", np.nan), ("", np.nan), (None, np.nan)])
def test_date_year_reads_the_cohen_date_formats(text, year):
    got = cf.date_year(pd.Series([text], dtype=object)).iloc[0]
    assert (np.isnan(got) and np.isnan(year)) or got == year


def test_era_age_group_and_size_bins():
    years = pd.Series([2004.0, 2018.0, 2019.0, 2020.0, 2021.0, np.nan])
    assert cf.era(years).tolist() == ["<=2018", "<=2018", "2019", "2020", "2020", "undated"]
    ages = pd.Series([5.0, 17.9, 18.0, 39.0, 40.0, 59.0, 60.0, np.nan, np.nan])
    sources = pd.Series(["cohen"] * 8 + ["kermany"])
    assert cf.age_group(ages, sources).tolist() == [
        "child (<18)", "child (<18)", "18-39", "18-39", "40-59", "40-59", ">=60", "unknown", "child (<18)"]
    sizes = pd.Series([599.0, 600.0, 999.0, 1000.0, 1999.0, 2000.0, np.nan])
    assert cf.size_bin(sizes).tolist() == ["<600", "600-999", "600-999", "1000-1499", "1500-1999", ">=2000",
                                           "unknown"]


def test_metadata_features_normalise_sex_age_and_format():
    f = cf.metadata_features(_rows())
    assert set(f["sex"].dropna()) == {"M", "F"}
    assert f.loc[f["age"].isna(), "age group"].eq("child (<18)").all()  # kermany rows
    assert set(f["format"]) == {"PNG L", "JPEG L"}
    assert (f["long_side"] == np.maximum(f["width"], f["height"])).all()


def test_counts_and_shares_add_up_per_part_label_and_factor():
    rows = _rows()
    counts = cf.confounder_counts(rows)
    assert set(counts["factor"]) == set(cf.FACTORS)
    sums = counts.groupby(["composition", "part", "label", "factor"])["share"].sum()
    assert np.allclose(sums, 1.0)
    n = counts.groupby(["part", "label", "factor"])["n"].sum().xs("source", level="factor")
    expected = rows.assign(part=np.where(rows["split"] == "test", "test", "train+val")).groupby(
        ["part", "label"]).size()
    assert n.sort_index().tolist() == expected.sort_index().tolist()
    view = counts[(counts["factor"] == "view") & (counts["label"] == 1)]
    assert set(view["level"]) == {"AP"} and view["share"].eq(1.0).all()


def test_table_is_compact_and_ordered():
    counts = cf.confounder_counts(_rows())
    table = cf.confounder_table(counts, "X")
    assert list(table.columns) == [(p, lab) for p in cf.PARTS for lab in ("COVID+", "COVID-")]
    assert table.index.get_level_values(0).unique().tolist() == list(cf.FACTORS)
    assert table.loc[("era", "2020"), ("test", "COVID-")] == "-"
    assert table.loc[("view", "AP"), ("train+val", "COVID+")].endswith("(100%)")


def test_median_ages_and_summary():
    rows = _rows()
    med = cf.median_ages(rows)
    pos = med[(med["label"] == "COVID+")]
    assert pos["median age"].eq(65.0).all()
    assert med.loc[med["label"] == "COVID-", "age known"].eq(0).all()
    summary = cf.confounder_summary(rows)
    assert summary.xs("COVID-", level="label")["child"].eq(1.0).all()
    assert summary.xs("COVID+", level="label")["main source"].str.startswith("cohen (100%)").all()


def test_pairs_in_compositions_and_pair_similarity(tmp_path):
    from PIL import Image

    from covid_lib.data.dedup import pair_similarity, pairs_in_compositions

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (80, 80)).astype(np.uint8)
    images = {"x": base, "y": np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8),
              "z": rng.integers(0, 255, (80, 80)).astype(np.uint8)}
    paths = {}
    for k, v in images.items():
        paths[k] = str(tmp_path / f"{k}.png")
        Image.fromarray(v).save(paths[k])
    manifest = pd.DataFrame({"source": "s", "image_id": list(images), "image_path": [paths[k] for k in images],
                             "orig_width": 80, "orig_height": 80})
    pairs = pd.DataFrame({"source_a": ["s", "s"], "image_id_a": ["x", "x"],
                          "source_b": ["s", "s"], "image_id_b": ["y", "z"]})
    sim = pair_similarity(pairs, manifest, side=16)
    assert sim.loc[0, "correlation"] > 0.99 > sim.loc[1, "correlation"]
    composed = pd.DataFrame({"composition": ["A", "A", "B", "B", "B"], "source": "s",
                             "image_id": ["x", "y", "x", "y", "z"],
                             "split": ["train", "test", "test", "test", "val"]})
    hits = pairs_in_compositions(pairs, composed)
    assert hits.tolist() == ["A", "B"]


def test_train_val_vs_paper_adds_validation_and_flags_balance():
    from covid_lib.data.compose import train_val_vs_paper

    long = pd.DataFrame([
        # composition, split, set, label, ours, paper
        ("CORDA", "train", "CORDA", 1, 20, 126), ("CORDA", "train", "CORDA", 0, 20, 105),
        ("CORDA", "val", "CORDA", 1, 5, np.nan), ("CORDA", "val", "CORDA", 0, 5, np.nan),
        ("CORDA", "test", "CORDA", 1, 30, 90), ("CORDA", "test", "CORDA", 0, 10, 45),
    ], columns=["composition", "split", "set", "label", "ours", "paper"])
    out = train_val_vs_paper(long)
    total = out.loc[("CORDA", "total")]
    assert (total["ours COVID+"], total["paper COVID+"], total["ours COVID-"], total["paper COVID-"]) == (
        25, 126, 25, 105)
    assert total["balanced"] == "ours yes, paper no"
