"""Masks by label and the visual audit (covid_lib.report.masks) on synthetic masks and tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from covid_lib.report import masks as rm
from covid_lib.report.chain import diagnose_image
from covid_lib.preprocess import Pipeline

H, W = 100, 120


def _ellipse(cx: float, cy: float = 0.5, rx: float = 0.14, ry: float = 0.33) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W] / np.array([H, W])[:, None, None]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1


LEFT, RIGHT = _ellipse(0.3), _ellipse(0.7)


def test_two_lungs_are_not_one_lung():
    s = rm.mask_shape(LEFT | RIGHT)
    assert s["components"] == 2
    assert s["component_ratio"] == pytest.approx(1.0, abs=0.02)
    assert s["side_balance"] == pytest.approx(1.0, abs=0.02)
    assert not s["one_lung"]


def test_one_lung_and_a_small_fragment_is_one_lung():
    fragment = _ellipse(0.7, 0.2, 0.03, 0.04)
    for mask in (LEFT, LEFT | fragment, RIGHT):
        s = rm.mask_shape(mask)
        assert s["one_lung"], s
        assert s["side_balance"] < 0.25


def test_two_lungs_joined_across_the_midline_are_not_one_lung():
    bridge = np.zeros((H, W), bool)
    bridge[30:36, 30:90] = True
    s = rm.mask_shape(LEFT | RIGHT | bridge)
    assert s["components"] == 1 and s["component_ratio"] == 0.0
    assert not s["one_lung"]


def test_empty_mask():
    s = rm.mask_shape(np.zeros((H, W), bool))
    assert s["components"] == 0 and not s["one_lung"] and np.isnan(s["side_balance"])


def test_diagnose_image_carries_the_shape_columns():
    img = np.full((H, W), 150, np.uint8)
    img[LEFT] = 60
    prob = LEFT.astype(np.float32)
    row = diagnose_image(img, prob, Pipeline(image_size=64))
    assert row["one_lung"] and row["components"] == 1


def test_rate_estimate_wilson_bootstrap_and_degenerate():
    e = rm.rate_estimate([1, 0, 0, 0])
    assert e.method == "Wilson" and e.value == 0.25 and e.low < 0.25 < e.high
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    e = rm.rate_estimate([1, 1, 0, 0, 0, 0, 0, 1], groups, n_boot=300)
    assert "cluster bootstrap" in e.method and e.low <= e.value <= e.high
    e = rm.rate_estimate([0] * 8, groups)
    assert e.value == 0 and e.low == 0 and e.high > 0.3 and "4 patients" in e.method


def _diag(n_pos: int = 30, n_neg: int = 30, seed: int = 0) -> pd.DataFrame:
    """COVID+ masks smaller, more often one lung and refused by the crop than COVID- ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, n, area, p_one in ((1, n_pos, 0.18, 0.3), (0, n_neg, 0.26, 0.0)):
        for i in range(n):
            one = rng.random() < p_one
            rows.append({"source": "cohen", "image_id": f"{label}-{i}", "patient_id": f"p{label}-{i // 2}",
                         "covid": label, "view": "PA", "mask_area": area + rng.normal(0, 0.01),
                         "one_lung": one, "chain_rejection": "", "crop_rejection": "crop under half" if one else ""})
    rows.append({"source": "montgomery", "image_id": "m", "patient_id": "m", "covid": np.nan, "view": "PA",
                 "mask_area": 0.25, "one_lung": False, "chain_rejection": "", "crop_rejection": ""})
    return pd.DataFrame(rows)


def test_label_table_and_gap():
    d = _diag()
    table = rm.label_table(d, n_boot=200)
    assert list(table.index) == [("cohen", "COVID+"), ("cohen", "COVID-")]  # unlabelled sources dropped
    assert table.loc[("cohen", "COVID-"), "one-lung masks"] == 0
    assert table.loc[("cohen", "COVID+"), "patients"] == 15
    gap = rm.label_gap(d, "mask_area", n_boot=300)
    assert gap.value == pytest.approx(-0.08, abs=0.01) and gap.high < 0
    one = rm.label_gap(d, "one_lung", n_boot=300)
    assert one.value > 0 and one.low <= one.value <= one.high
    assert np.isnan(rm.label_gap(d, "mask_area", sources=["montgomery"]).value)
    gaps = rm.label_gaps(d, {"cohen": ["cohen"]}, n_boot=100)
    assert gaps.shape == (1, 4)


def test_label_table_needs_labels():
    with pytest.raises(ValueError, match="covid"):
        rm.label_table(_diag().drop(columns="covid"))


def _manifest() -> pd.DataFrame:
    rows = [{"source": s, "image_id": f"{s}{i}", "patient_id": f"{s}p{i // 3}", "view": "PA"}
            for s in ("nih", "kermany") for i in range(30)]
    return pd.DataFrame(rows)


def test_audit_sample_is_seeded_and_one_image_per_patient():
    m = _manifest()
    a, b = rm.audit_sample(m, 6, seed=1), rm.audit_sample(m, 6, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert (a.groupby("source").size() == 6).all()
    assert not a["patient_id"].duplicated().any()
    assert len(rm.audit_sample(m, 50)) == 20  # capped at one image per patient


def test_audit_csv_and_summary(tmp_path):
    audit = pd.DataFrame({"source": ["nih"] * 4 + ["kermany"] * 2, "image_id": list("abcdef"),
                          "verdict": ["ok", "ok", "partial", "failed", "ok", "ok"], "note": "",
                          "auditor": "test"})
    path = tmp_path / "audit.csv"
    audit.to_csv(path, index=False)
    summary = rm.audit_summary(rm.read_audit(path))
    assert summary.loc["nih", "failed"] == 1 and summary.loc["all", "images"] == 6
    assert summary.loc["nih", "failed, % [95% CI]"].startswith("25.0 [")
    assert summary.loc["kermany", "failed, % [95% CI]"].startswith("0.0 [0.0, ")
    audit.loc[0, "verdict"] = "bad"
    audit.to_csv(path, index=False)
    with pytest.raises(ValueError, match="unknown verdicts"):
        rm.read_audit(path)


def test_plot_audit_sheet():
    img = np.full((H, W), 120, np.uint8)
    cases = [{"image": img, "mask": LEFT | RIGHT, "label": "1. x", "verdict": "failed"},
             {"image": img, "mask": np.zeros((H, W), bool), "label": "2. y"}]
    assert isinstance(rm.plot_audit_sheet(cases, ncols=3, color="#1f77b4"), Figure)


def test_mean_gap_and_view_gaps():
    rng = np.random.default_rng(0)
    n = 40
    scores = pd.DataFrame({"view": ["PA"] * n + ["AP Supine"] * n + ["AP"] * n,
                           "patient_id": [f"p{i % 50}" for i in range(3 * n)],  # some patients in two views
                           "dice": np.r_[0.86 + rng.normal(0, 0.01, n), 0.80 + rng.normal(0, 0.01, n),
                                         0.86 + rng.normal(0, 0.01, n)],
                           "coverage": 0.75})
    g = rm.mean_gap(scores["dice"], scores["view"] == "AP Supine", scores["view"] == "PA", scores["patient_id"],
                    n_boot=300)
    assert g.value == pytest.approx(-0.06, abs=0.01) and g.high < 0 and "50 patients" in g.method
    table = rm.view_gaps(scores, n_boot=300)
    assert list(table.index) == ["AP minus PA", "AP Supine minus PA"]
    assert table.loc["AP minus PA", "coverage"].startswith("0.000")
    assert np.isnan(rm.mean_gap([1.0, 2.0], [True, True], [False, False], ["a", "b"]).value)


def test_audit_against_checks():
    audit = pd.DataFrame({"source": ["nih"] * 3, "image_id": list("abc"), "verdict": ["ok", "failed", "partial"],
                          "note": "", "auditor": "t"})
    diag = pd.DataFrame({"source": ["nih"] * 3, "image_id": list("abc"), "chain_rejection": ["", "", ""],
                         "crop_rejection": ["crop under half", "", ""], "one_lung": [False, True, False]})
    t = rm.audit_against_checks(audit, diag)
    assert t.loc["ok", "refused with the ROI crop"] == 1 and t.loc["failed", "one-lung mask"] == 1
    assert t.loc["partial", "any check"] == 0 and list(t["images"]) == [1, 1, 1]
    t = rm.audit_against_checks(audit, diag.head(1))
    assert t.loc["failed", "not diagnosed"] == 1 and t.loc["ok", "not diagnosed"] == 0
