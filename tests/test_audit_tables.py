"""The audit page's tables (:mod:`covid_lib.audit.tables`): one estimate column, pairs that matter first."""

from __future__ import annotations

import pandas as pd

from covid_lib.audit import tables


def _findings() -> pd.DataFrame:
    return pd.DataFrame({"section": ["3 leakage", "4 image statistics", "1 metadata"],
                         "measure": ["images with a duplicate of another label", "image statistics, raw", "source"],
                         "target": ["label", "source", "label"], "metric": ["share", "balanced accuracy", "AUC"],
                         "value": [0.004914, 1.0, float("nan")], "low": [0.001349, 0.98, float("nan")],
                         "high": [0.017738, 1.0, float("nan")], "chance": [0.0, 0.5, 0.5], "flag": [True, True, False],
                         "note": ["1 pairs", "2 sources", "one level"]})


def test_measures_join_value_and_interval_in_the_findings_order():
    table = tables.measures(_findings(), ["4 image statistics", "3 leakage"]).data
    assert list(table["measure"]) == ["images with a duplicate of another label", "image statistics, raw"]
    assert list(table[tables.ESTIMATE]) == ["0.5% [0.1%, 1.8%]", "1.00 [0.98, 1.00]"]
    assert not {"value", "low", "high"} & set(table.columns)
    empty = tables.measures(_findings(), ["1 metadata"], ["measure", tables.ESTIMATE, "absent column"]).data
    assert list(empty.columns) == ["measure", tables.ESTIMATE] and empty[tables.ESTIMATE].tolist() == ["–"]


def test_duplicate_pairs_show_file_names_and_put_pairs_under_two_labels_first():
    pairs = pd.DataFrame({"source_a": "s", "image_id_a": ["../data/s/images/x1.png", "../data/s/images/y1.png"],
                          "patient_id_a": ["p1", "p2"], "split_a": "all", "label_a": [1, 1],
                          "source_b": "s", "image_id_b": ["../data/s/images/x2.png", "/abs/s/images/y2.png"],
                          "patient_id_b": ["p3", "p4"], "split_b": "all", "label_b": [1, 0], "kind": "near",
                          "distance": [2, 4], "across_splits": False, "same_patient": False})
    table = tables.duplicate_pairs(pairs).data
    assert table[["image a", "image b"]].values.tolist() == [["y1.png", "y2.png"], ["x1.png", "x2.png"]]
    assert table["match (pHash bits)"].tolist() == ["near (4)", "near (2)"]
    assert not {"across_splits", "same_patient", "kind", "distance"} & set(table.columns)
    assert tables.duplicate_pairs(pairs, n=1).caption == "the first 1 of 2 pairs (all in duplicates.csv)"
    assert tables.duplicate_pairs(pairs.head(0)).data.iloc[0, 0] == "none found"
    assert "source a" in table.columns  # "p1" does not name its source
    named = pairs.assign(patient_id_a=["s:p1", "s:p2"], patient_id_b=["s:p3", "s:p4"])
    assert not {"source a", "source b"} & set(tables.duplicate_pairs(named).data.columns)  # "s:p1" does
