"""The tables the chapters show for reading (issue 19): the same numbers as the analysis tables, in
fewer columns that fit the page's column, on small synthetic inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covid_lib.report import common
from covid_lib.report import sources as rs


def test_styled_keeps_the_nowrap_columns_on_one_line():
    df = pd.DataFrame({"main source": ["cohen (100%)"], "n": [3], "text": ["long words"],
                       "run": ["covid-CORDA-resnet18-" + "0123456789abcdef0123456789"]})
    html = common.styled(df, nowrap=["main source", "not a column"]).to_html()
    # a column rule ("td.col0") that outranks the table's "td" rule; numbers never break either
    assert html.count("white-space: nowrap") == 2
    assert "td.col0" in html and "td.col1" in html and "td.col2" not in html
    # words stay whole, except in a column with a token too long to fit (a hash, a URL)
    assert "overflow-wrap: break-word" in html and html.count("overflow-wrap: anywhere") == 1 and "td.col3" in html


def test_data_cards_split_into_numbers_and_text():
    cards = pd.DataFrame({
        "cohen": {"title": "COVID collection", "origin": "https://x", "license": "mixed", "role in the paper": "CORDA",
                  "images": 5, "patients": 3, "images per patient (max)": 2, "labels": "covid: 1 3, 0 2",
                  "views": "PA 5", "lung masks": 4, "caveats": "copies", "excluded rows": 1},
        "nih": {"title": "NIH", "origin": "https://y", "license": "CC0", "role in the paper": "RSNA",
                "images": 7, "patients": 7, "images per patient (max)": 1, "labels": "pneumonia: 0 7",
                "views": "AP 7", "lung masks": 0, "caveats": "subset", "excluded rows": 0}})
    overview = rs.data_card_overview(cards)
    assert overview["source"].tolist() == ["cohen", "nih"]
    assert list(overview.columns) == ["source", "role in the paper", *rs.CARD_NUMBERS]
    assert overview.set_index("source").loc["nih", "images"] == 7
    details = rs.data_card_details(cards)
    assert list(details.columns) == ["source", "field", "text"]
    assert details["field"].tolist()[:5] == ["title", "origin", "license", "labels", "caveats"]
    assert details["source"].tolist() == ["cohen", "", "", "", "", "nih", "", "", "", ""]
    assert not set(details["field"]) & set(rs.CARD_NUMBERS)


def test_near_pairs_table_names_each_image_once_in_seven_columns():
    judged = pd.DataFrame({"source_a": ["cohen"], "patient_id_a": ["cohen:43"], "split_a": ["train"],
                           "source_b": ["nih"], "patient_id_b": ["nih:2572"], "split_b": ["test"], "distance": [4],
                           "same_patient": [False], "correlation": [0.848], "mean_abs_diff": [26.879],
                           "age, sex, location a": ["27.0 M Italy"], "age, sex, location b": ["-"],
                           "trained on one, tested on the other in": [""]})
    table = rs.near_pairs_table(judged)
    assert len(table.columns) == 7
    row = table.iloc[0]
    assert row["image a"] == "cohen:43 (train) · 27 M Italy" and row["image b"] == "nih:2572 (test)"
    assert row["same patient id"] == "no" and row["trained on one, tested on the other in"] == "–"


def test_confounder_ablation_display_puts_alone_and_without_in_one_cell():
    from covid_lib.report import confounders as rc

    ablation = pd.DataFrame([
        {"composition": c, "group": g, "setting": s, "auc": v}
        for c, base in (("CORDA", 0.9), ("CORDA&RSNA", 0.8))
        for g, s, v in (("all", "all", base), ("year", "alone", base - 0.1), ("year", "without", base - 0.2),
                        ("view", "alone", 0.6), ("view", "without", base))])
    table = rc.ablation_display(ablation)
    assert list(table.columns) == ["feature group", "CORDA", "CORDA&RSNA"]
    assert table["feature group"].tolist() == ["all groups", "year: alone / without", "view: alone / without"]
    assert table.iloc[1]["CORDA"] == "0.80 / 0.70" and table.iloc[0]["CORDA&RSNA"] == "0.80"


def test_unseen_reading_tables():
    from covid_lib.report import unseen as ru

    pairs = pd.DataFrame({"COVID+ part": ["cohen COVID+", "cohen COVID+"], "COVID- part": ["nih COVID-", "kermany COVID-"],
                          "pair": ["mixed", "unseen"], "auc": [0.81, 0.49], "low": [0.74, 0.39], "high": [0.87, 0.58]})
    wide = ru.pair_table(pairs)
    assert list(wide.columns) == ["COVID+ part", "kermany COVID−", "nih COVID−"]
    assert wide.iloc[0]["nih COVID−"] == "0.81 [0.74, 0.87] · mixed"
    rates = pd.DataFrame([
        {"split": "U1-hannover-nih", "variant": "from scratch", "adapt": np.nan, "status": "done", "part": part,
         "role": role, "metric": metric, "value": 0.9, "low": 0.8, "high": 1.0}
        for part, role, metric in (("hannover COVID+", "seen", "sensitivity"), ("nih COVID-", "seen", "specificity"),
                                   ("cohen COVID+", "unseen", "sensitivity"), ("kermany COVID-", "unseen", "specificity"),
                                   ("cohen COVID-", "neither", "specificity"))])
    table = ru.part_rates_table(rates)
    assert len(table) == 1 and len(table.columns) == 7
    assert table.iloc[0]["unseen COVID−: specificity"] == "kermany 0.90 [0.80, 1.00]"
    curve = pd.DataFrame([{"split": "U1-hannover-nih", "variant": "kermany encoder, fine-tuned", "adapt": k,
                           "status": "done", "run_id": f"r{k}", "unseen_auc": 0.6 + k / 100, "unseen_low": 0.5,
                           "unseen_high": 0.7 + k / 100, "seen_auc": 0.9, "seen_low": 0.8, "seen_high": 1.0,
                           "cohen COVID+ sensitivity": 0.5, "cohen COVID+ sensitivity_low": 0.4,
                           "cohen COVID+ sensitivity_high": 0.6, "kermany COVID- specificity": 0.7,
                           "kermany COVID- specificity_low": 0.6, "kermany COVID- specificity_high": 0.8}
                          for k in (0, 4)])
    shown = ru.adaptation_display(curve)
    assert shown["adapt (images per class)"].tolist() == [0, 4]
    assert shown.iloc[1]["unseen AUC"] == "0.64 [0.50, 0.74]"
    assert shown.iloc[0]["unseen COVID+: sensitivity"] == "cohen 0.50 [0.40, 0.60]"
    assert shown.iloc[0]["unseen COVID−: specificity"] == "kermany 0.70 [0.60, 0.80]"
    assert len(ru.measures_table()) == 5 and len(ru.splits_table()) == 3 and len(ru.paper_table()) == len(ru.PAPER)


def test_auc_gain_table_marks_models_that_did_not_learn():
    from covid_lib.report import pretraining as rp

    gains = pd.DataFrame([{"composition": "CORDA", "pretrain": "kermany", "n_images": 86, "n_patients": 53,
                           "auc_pretrained": 0.71, "auc_scratch": 0.75, "pretrained_did_not_learn": False,
                           "scratch_did_not_learn": True, "difference": -0.04, "difference_cluster_ci": (-0.1, 0.02),
                           "delong_p": 0.4}])
    table = rp.auc_gain_table(gains)
    assert len(table.columns) == 7
    row = table.iloc[0]
    assert row["images / patients"] == "86 / 53" and row["AUC scratch"] == "0.750 (did not learn)"
    assert row["difference [patient 95% CI]"] == "-0.040 [-0.100, +0.020]"
    assert rp.auc_gain_table(pd.DataFrame()).empty


def test_matrix_display_keeps_the_rows_and_numbers_in_fewer_columns():
    from covid_lib.metrics import METRICS
    from covid_lib.report import reproduction as rp

    long = pd.DataFrame([{"pretrain": "kermany", "composition": "CORDA", "test_set": t, "status": "done", "n": 86,
                          "n_rejected": 1, **{m: 0.8 for m in METRICS}, **{f"{m}_low": 0.7 for m in METRICS},
                          **{f"{m}_high": 0.9 for m in METRICS}, **{f"paper_{m}": 0.85 for m in METRICS}}
                         for t in ("CORDA", "CORDA&RSNA")])
    full = rp.matrix_table(long)
    shown = rp.matrix_display(long)
    assert len(shown) == len(full) and len(shown.columns) == 3 + len(METRICS) < len(full.columns)
    assert shown.iloc[0]["AUC: ours · paper"] == full.iloc[0]["AUC ours"] + " · " + full.iloc[0]["AUC paper"]
    assert shown.iloc[0]["status, n (rejected)"] == "done, 86 (1)"
    assert shown.iloc[0]["trained on (pre-training)"].startswith("CORDA (")
    plain = rp.matrix_display(long.drop(columns=[f"paper_{m}" for m in METRICS]), metrics=("auc",))
    assert list(plain.columns)[-1] == "AUC"


def test_checklist_summary_and_reasons_split_the_checklist():
    from covid_lib.report import checklist as rc

    full = rc.checklist_table()
    summary, reasons = rc.checklist_summary(), rc.checklist_reasons()
    assert len(summary) == len(reasons) == len(full)
    assert list(summary.columns) == ["#", "item", "question", "in this book"]
    assert set(summary.columns) | set(reasons.columns) == set(full.columns)


def test_shortcut_reading_tables():
    from covid_lib.report import shortcuts as rs

    ages = pd.DataFrame([{"arch": "resnet18", "trained on": "CORDA", "pretrain": "none", "comparison": name,
                          "AUC [95% CI]": "0.50 [0.40, 0.60]", "learned": learned, "n children": 10, "n adults": 12}
                         for learned in ("yes", "no: did not learn") for name, *_ in rs.AGE_COMPARISONS])
    labelled = rs.with_model_label(ages)
    assert labelled["model"].str.endswith("(did not learn)").sum() == len(rs.AGE_COMPARISONS)
    matrix = rs.age_matrix(labelled.iloc[: len(rs.AGE_COMPARISONS)])
    assert list(matrix.columns) == ["model", *[c[0] for c in rs.AGE_COMPARISONS]] and len(matrix) == 1
    sizes = rs.age_group_sizes(labelled)
    assert len(sizes) == len(rs.AGE_COMPARISONS) and list(sizes.columns)[1:] == ["n first group", "n second group"]
    masks = pd.DataFrame({"composition": ["CORDA"], "n train": [58], "test COVID+/COVID-": ["63/23"],
                          "test sources": ["cohen"], "rejected by the chain": [0], "auc": [0.6], "auc_low": [0.5],
                          "auc_high": [0.7], "interval": ["patients"]})
    assert rs.mask_display(masks).iloc[0]["AUC [95% CI]"] == "0.60 [0.50, 0.70]"


@pytest.mark.parametrize("digits", [1, 2])
def test_styled_tables_render(digits):
    html = common.styled(pd.DataFrame({"a": [0.123], "b": ["x"]}), digits=digits).to_html()
    assert f"{0.123:.{digits}f}" in html
