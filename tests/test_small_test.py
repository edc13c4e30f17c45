"""The small-test-set trap (covid_lib.analysis.small_test_set): interval maths against scipy / statsmodels and
simulation, the redraw sampler, Table IV from synthetic records, the C5 verdict; one smoke run on
real data checks that re-scoring a run equals its record."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from covid_lib import runs
from covid_lib.report import small_test_set as rst
from covid_lib.analysis import small_test_set as st
from covid_lib.metrics import Estimate


# ------------------------------------------------------------------------------ interval maths
@pytest.mark.parametrize("k,n", [(10, 10), (5, 5), (15, 15), (3, 7), (0, 5)])
def test_exact_and_wilson_match_statsmodels(k, n):
    assert st.exact_interval(k, n) == pytest.approx(proportion_confint(k, n, method="beta"), abs=1e-9)
    from covid_lib.stats import wilson_interval
    assert wilson_interval(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-9)


def test_smallest_rate_is_the_one_sided_exact_bound():
    for n in (5, 10, 15):
        p = st.smallest_rate(n)
        assert p ** n == pytest.approx(0.05)
        # = the lower end of the two-sided exact interval at twice the alpha
        assert p == pytest.approx(st.exact_interval(n, n, alpha=0.10)[0])


def test_chance_of_perfect():
    assert st.chance_of_perfect(1, 1) == 1.0
    assert st.chance_of_perfect(0.9, 0.8) == pytest.approx(0.9 ** 10 * 0.8 ** 5)


def test_perfect_separation_probability_matches_theory_and_simulation():
    from math import comb

    # no signal: every ordering equally likely, so P(perfect) = 1 / C(15, 5)
    assert st.p_perfect_separation(0.0) == pytest.approx(1 / comb(15, 5), rel=1e-6)
    rng = np.random.default_rng(0)
    d = 2.0
    pos, neg = rng.normal(d, 1, (200_000, 10)), rng.normal(0, 1, (200_000, 5))
    sim = (pos.min(1) > neg.max(1)).mean()
    assert st.p_perfect_separation(d) == pytest.approx(sim, abs=0.005)


def test_perfect_auc_and_ba_bounds():
    auc = st.perfect_auc_bound()
    assert 0.5 < auc < 1.0
    from scipy.stats import norm
    assert st.p_perfect_separation(np.sqrt(2) * norm.ppf(auc)) == pytest.approx(0.05, abs=1e-6)
    ba = st.perfect_ba_bound()
    # at the optimum, a perfect score has probability alpha and no smaller BA reaches it
    grid = np.linspace(0.05 ** (1 / 5), 1, 2001)
    brute = (((0.05 / grid ** 5) ** 0.1 + grid) / 2).min()
    assert ba == pytest.approx(brute, abs=1e-5)
    assert ba <= st.smallest_rate(15)  # se = sp = p with p**15 = alpha is one feasible point


def test_perfect_score_table():
    t = st.perfect_score_table(n_boot=200)
    row = t.set_index(["metric", "method"])
    assert row.loc[("sensitivity", "Wilson"), "low"] == pytest.approx(0.7225, abs=1e-3)
    assert row.loc[("specificity", "Wilson"), "low"] == pytest.approx(0.5655, abs=1e-3)
    assert row.loc[("auc", "DeLong"), ["low", "high"]].tolist() == [1.0, 1.0]  # degenerate
    assert row.loc[("auc", "bootstrap (images)"), ["low", "high"]].tolist() == [1.0, 1.0]
    assert (t["high"] == 1.0).all() and (t["low"] <= 1.0).all()


# ------------------------------------------------------------------------------------ redraws
def pool(n_pos=28, g_pos=21, n_neg=7, g_neg=6, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gp = np.r_[np.arange(g_pos), rng.integers(0, g_pos, n_pos - g_pos)]
    gn = np.r_[np.arange(g_neg), rng.integers(0, g_neg, n_neg - g_neg)]
    return pd.DataFrame({"label": np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)],
                         "group_id": [f"p{g}" for g in gp] + [f"n{g}" for g in gn],
                         "score": np.r_[rng.uniform(.3, 1, n_pos), rng.uniform(0, .7, n_neg)]})


def test_draws_have_the_papers_counts_one_image_per_patient_and_are_seeded():
    p = pool()
    draws = st.draw_tests(p, n_draws=50, seed=3)
    assert draws.shape == (50, 15)
    assert np.array_equal(draws, st.draw_tests(p, n_draws=50, seed=3))
    assert not np.array_equal(draws, st.draw_tests(p, n_draws=50, seed=4))
    for d in draws:
        sub = p.iloc[d]
        assert len(set(d)) == 15
        assert (sub["label"] == 1).sum() == 10 and (sub["label"] == 0).sum() == 5
        assert sub["group_id"].is_unique  # enough groups: no patient twice
    assert 1 < st.distinct_draws(draws) <= 50


def test_draws_reuse_patients_only_when_groups_run_out():
    p = pool(n_neg=7, g_neg=3)
    for d in st.draw_tests(p, n_draws=20, seed=0):
        neg = p.iloc[d].query("label == 0")
        assert len(neg) == 5 and neg["group_id"].nunique() == 3  # all 3 groups, then 2 more images
    with pytest.raises(ValueError, match="5 needed"):
        st.draw_tests(pool(n_neg=4, g_neg=4), n_draws=1)


def test_redraw_metrics_and_summary():
    p = pool()
    per = st.redraw_metrics(p, st.draw_tests(p, n_draws=30, seed=0))
    assert len(per) == 30 and per["auc"].between(0, 1).all()
    from sklearn.metrics import roc_auc_score
    d0 = st.draw_tests(p, n_draws=1, seed=0)[0]
    assert per.loc[0, "auc"] == pytest.approx(roc_auc_score(p["label"].iloc[d0], p["score"].iloc[d0]))
    summary = st.redraw_summary(per, fixed={"auc": 1.0}, paper={"auc": 1.0})
    row = summary.set_index("metric").loc["auc"]
    assert row["redraw low"] <= row["redraw median"] <= row["redraw high"] and row["draws"] == 30
    perfect = st.redraw_metrics(p.assign(score=p["label"].astype(float)), st.draw_tests(p, n_draws=5))
    assert (st.redraw_summary(perfect)["share = 1"] == 1.0).all()


def test_auc_gap():
    own = pool(seed=1).assign(score=lambda d: d["label"] * 0.5 + 0.25)  # perfect
    other = pool(seed=2).assign(score=0.5)  # no signal
    gap = st.auc_gap(own, other, n_boot=300)
    assert gap.value == pytest.approx(0.5) and gap.low == pytest.approx(0.5)
    same = st.auc_gap(own, own, n_boot=300)
    assert same.value == 0


# ----------------------------------------------------------------------------- Table IV, verdict
def fake_cell(pretrain: str, seed: int, state: str = "done", auc: float = 0.8) -> rst.Cell:
    rows = []
    for t in rst.TABLE4_SETS:
        r = {"test_set": t, "threshold_rule": rst.PAPER_RULE, "n": 15 if t == "COVID-ChestXRay" else 87}
        for m in ("sensitivity", "specificity", "f_score", "accuracy", "balanced_accuracy", "auc", "dor"):
            r.update({m: auc, f"{m}_low": auc - .1, f"{m}_high": auc + .1})
        rows.append(r)

    class R:
        metrics = pd.DataFrame(rows)
    return rst.Cell(pretrain, seed, f"run-{pretrain}-{seed}", state, R() if state != "missing" else None)


def test_table_four_and_seed_table_show_missing_did_not_learn_and_collapsed():
    cells = [fake_cell("none", 0, auc=0.7), fake_cell("none", 1, auc=0.9), fake_cell("none", 2, "missing"),
             fake_cell("kermany", 0, "did not learn", auc=0.5)]
    t = rst.table_four(cells)
    assert (t["who"] == "paper").sum() == 2
    assert "missing" in t.query("seed == 2")["auc"].tolist()
    assert t.query("pretrain == 'kermany'")["state"].eq("did not learn").all()
    cells.append(fake_cell("kermany", 1, "collapsed", auc=0.99))
    s = rst.seed_table(cells).set_index(["pretrain", "test_set"])
    assert s.loc[("none", "CORDA"), "AUC mean ± SD"] == f"0.80 ± {np.std([0.7, 0.9], ddof=1):.2f}"
    assert s.loc[("none", "CORDA"), "missing"] == "1 (seed 2)"
    # did not learn, collapsed: not averaged in, counted
    assert s.loc[("kermany", "CORDA"), "AUC mean ± SD"] == "–"
    assert (s.loc[("kermany", "CORDA"), "did not learn"], s.loc[("kermany", "CORDA"), "collapsed"]) == (
        "1 (seed 0)", "1 (seed 1)")
    assert rst.paper_table_four()["table"].eq("IV").all()


# ------------------------------------------------------------------------------- real data, smoke
@pytest.mark.data
def test_rescoring_a_run_equals_its_record(data_root, tmp_path, monkeypatch):
    """score_rows goes through the run's chain and normalisation: on the images the record scored
    it gives the record's scores (smoke run; the pool is capped by the profile)."""
    from covid_lib.data import compose, global_splits
    from covid_lib.data.compose import stand_in_rows

    monkeypatch.setenv(runs.RESULTS_ENV_VAR, str(tmp_path / "results"))
    result = runs.run(runs.RunSpec("COVID-ChestXRay", profile="smoke"), data_root=data_root, device="cpu",
                      progress=False)
    recorded = result.scores.query("test_set == 'COVID-ChestXRay'")
    fixed = compose("COVID-ChestXRay", data_root).query("split == 'test'")
    again, rejected = runs.execution.score_rows(result.spec, fixed, data_root=data_root, test_set="COVID-ChestXRay")
    merged = recorded.merge(again, on=["source", "image_id"], suffixes=("", "_again"))
    assert len(merged) == len(recorded) == len(again) > 0
    np.testing.assert_allclose(merged["score"], merged["score_again"], atol=1e-5)
    assert (merged["label"] == merged["label_again"]).all()
    splits = global_splits(data_root)
    test_pool = stand_in_rows(splits, "COVID-ChestXRay").query("split == 'test'")
    pooled, _ = runs.execution.score_rows(result.spec, test_pool, data_root=data_root)
    both = recorded.merge(pooled, on=["source", "image_id"], suffixes=("", "_pool"))
    np.testing.assert_allclose(both["score"], both["score_pool"], atol=1e-5)
    assert json.loads((result.path / "metrics.json").read_text())["test_sets"]["COVID-ChestXRay"]["n_scored"] == 15


def test_figures_and_paper_values():
    assert len(rst.plot_chance_of_perfect().axes) == 2
    assert rst.paper_values()["auc"] == 1.0 and rst.paper_values("CORDA")["specificity"] == 0.2


def test_plot_redraws_and_analysis_table_on_a_synthetic_analysis():
    from covid_lib.metrics import binary_metrics

    p = pool()
    draws = st.draw_tests(p, n_draws=20)
    per = st.redraw_metrics(p, draws)
    cell = fake_cell("none", 0)
    a = rst.CellAnalysis(cell, p, pd.DataFrame(), 15, 0.0, draws, per,
                         st.redraw_summary(per, {m: 0.8 for m in st.REDRAW_METRICS}, rst.paper_values()),
                         {m: 0.8 for m in st.REDRAW_METRICS},
                         binary_metrics(p["label"], p["score"], groups=p["group_id"], n_boot=100),
                         Estimate(0.1, -0.1, 0.3, "x"))
    t = rst.analysis_table({"none": a})
    assert len(t) == 5 and t["metric"].iloc[-1].startswith("AUC gap")
    assert len(rst.plot_redraws({"none": a, "kermany": a}).axes) == 4
