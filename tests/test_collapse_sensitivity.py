"""The collapse-rule sensitivity reading (:mod:`covid_lib.report.sensitivity`), on synthetic records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from covid_lib.report.sensitivity import (collapsed_models, keep_threshold_collapsed, sensitivity_markdown,
                                          threshold_only)


def _record(tmp_path, name: str, own: np.ndarray, composition: str = "CORDA") -> str:
    folder = tmp_path / name
    folder.mkdir()
    n = len(own)
    pd.DataFrame({"test_set": [composition] * n + ["CORDA&RSNA"] * 2, "source": "x",
                  "image_id": [f"i{k}" for k in range(n + 2)], "patient_id": [f"p{k}" for k in range(n + 2)],
                  "group_id": [f"p{k}" for k in range(n + 2)], "label": [k % 2 for k in range(n)] + [0, 1],
                  "score": [*own, 0.1, 0.9]}).to_csv(folder / "scores.csv", index=False)
    return str(folder)


def test_only_a_spread_model_on_one_side_of_the_threshold_is_kept(tmp_path):
    above = _record(tmp_path, "above", np.linspace(0.6, 0.95, 20))      # all >= 0.5, spread: threshold only
    flat = _record(tmp_path, "flat", np.full(20, 0.457))                 # below 0.5 and no spread
    fine = _record(tmp_path, "fine", np.linspace(0.1, 0.9, 20))          # not collapsed at all
    assert threshold_only(above, "CORDA") and not threshold_only(flat, "CORDA") and not threshold_only(fine, "CORDA")
    records = pd.DataFrame({"composition": "CORDA", "path": [above, flat, fine, None],
                            "status": ["collapsed", "collapsed", "done", "missing"]})
    kept = keep_threshold_collapsed(records)
    assert kept["status"].tolist() == ["done", "collapsed", "done", "missing"]
    assert records["status"].tolist()[0] == "collapsed", "the records frame is not changed in place"
    m = collapsed_models(records)
    assert (m["collapsed"], m["threshold_only"], m["val_one_sided"]) == (2, 1, 0)  # no val_scores.csv here
    assert m["by_composition"] == {"CORDA": [2, 3]}  # collapsed of the learned; the missing run is not counted
    import json
    (tmp_path / "flat" / "metrics.json").write_text(json.dumps({"best_epoch": 3}))
    (tmp_path / "fine" / "metrics.json").write_text(json.dumps({"best_epoch": 11}))
    m = collapsed_models(records)
    assert (m["median_best_epoch_collapsed"], m["median_best_epoch_rest"]) == (3.0, 11.0)
    assert m["median_test_auc"] == pytest.approx(roc_auc_score([k % 2 for k in range(20)], np.linspace(0.6, 0.95, 20)))


def test_a_model_on_one_side_of_the_threshold_on_validation_too_is_counted(tmp_path):
    own = np.linspace(0.6, 0.95, 20)
    above = _record(tmp_path, "above", own)
    labels = [k % 2 for k in range(20)]
    pd.DataFrame({"test_set": "CORDA (validation)", "source": "x", "image_id": [f"v{k}" for k in range(20)],
                  "patient_id": [f"v{k}" for k in range(20)], "group_id": [f"v{k}" for k in range(20)],
                  "label": labels, "score": 0.55 + 0.01 * np.array(labels)}).to_csv(
        tmp_path / "above" / "val_scores.csv", index=False)
    m = collapsed_models(pd.DataFrame({"composition": ["CORDA"], "path": [above], "status": ["collapsed"]}))
    assert m["val_one_sided"] == 1 and m["median_val_auc"] == pytest.approx(1.0)
    expected = roc_auc_score(labels, own)
    assert m["median_test_auc"] == pytest.approx(expected)


def test_the_page_says_which_verdicts_rest_on_the_rule():
    def entry(outcome, used):
        return {"outcome": outcome, "estimate": 0.05, "low": -0.01, "high": 0.11, "n_used": used, "n_left_out": 10 - used}

    data = {"scales": {"full": {"label": "whole ChestXRay set (kermany_full), 5 seeds",
                                "claims": {"C1": entry("reproduced", 6), "C2": entry("inconclusive", 4)}}},
            "collapse_sensitivity": {"rule": "keep them", "scales": {"full": {
                "models": {"collapsed": 5, "threshold_only": 3},
                "claims": {"C1": entry("reproduced", 8), "C2": entry("not reproduced", 7)}}}}}
    page = sensitivity_markdown(data)
    rows = {line.split(" ")[1]: line for line in page.splitlines() if line.startswith("| C")}
    assert rows["C1"].endswith("| no |") and rows["C2"].endswith("| **yes** |")
    assert "5 collapsed models in the judged grids, 3 of them at the threshold only" in page
    assert "8 used, 2 left out" in rows["C1"]
    assert "book judge" in sensitivity_markdown({})


def test_the_page_shows_f3_beside_its_protocol_verdict():
    def entry(outcome, used, **more):
        return {"outcome": outcome, "estimate": 0.11 if used else float("nan"), "low": 0.002, "high": 0.23,
                "n_used": used, "n_left_out": 1 - used, **more}

    kept = {"paper": {"status": "collapsed: all scores below the threshold 0.5", "min": 0.386, "max": 0.432,
                      "spread": 0.034}}
    data = {"scales": {"full": {"label": "whole ChestXRay set", "claims": {"C1": entry("reproduced", 1)}}},
            "findings": {"F3": entry("inconclusive", 0)},
            "collapse_sensitivity": {"rule": "keep them", "scales": {"full": {
                "models": {"collapsed": 0, "threshold_only": 0}, "claims": {"C1": entry("reproduced", 1)}}},
                "findings": {"F3": entry("reproduced", 1, details={"kept_threshold_collapsed": kept})}}}
    page = sensitivity_markdown(data)
    row = next(line for line in page.splitlines() if line.startswith("| F3"))
    assert row.endswith("| **yes** |") and "**inconclusive**: 0 used, 1 left out" in row
    assert "**reproduced**: +0.110 [+0.002, +0.230], 1 used, 0 left out" in row
    assert "all scores below the threshold 0.5, at 0.386-0.432, but a 5-95% range of 0.034" in page
    del data["collapse_sensitivity"]["findings"]  # a reading written before F3 joined it: no row
    assert "| F3" not in sensitivity_markdown(data)


def _entry(outcome: str) -> dict:
    return {"outcome": outcome, "estimate": 0.05, "low": 0.01, "high": 0.09, "mde": 0.06, "n_used": 6,
            "n_left_out": 2, "left_out_reasons": {"collapsed": 2}, "reason": "", "details": {}}


def _verdicts(sensitive: dict[str, str]) -> dict:
    from covid_lib.analysis.verdicts import CLAIMS

    claims = {c: _entry("reproduced") for c in CLAIMS}
    return {"protocol_hash": "abc", "protocol_version": 2, "protocol_committed": "2026-12-03",
            "scales": {"full": {"label": "whole ChestXRay set (kermany_full), 5 seeds", "claims": claims}},
            "collapse_sensitivity": {"rule": "keep them", "scales": {"full": {
                "models": {"collapsed": 2, "threshold_only": 2},
                "claims": {c: _entry(sensitive.get(c, "reproduced")) for c in CLAIMS}}}}}


def test_the_glance_tables_mark_the_verdicts_that_rest_on_the_collapse_rule():
    from covid_lib.report.judge import verdicts_markdown
    from covid_lib.report.plain import plain_verdicts_markdown

    data = _verdicts({"C2": "no detectable effect"})
    rows = {line.split("**")[1]: line for line in verdicts_markdown(data).splitlines() if line.startswith("| **C")}
    assert "`reproduced` †" in rows["C2"] and "†" not in rows["C1"]
    plain = {line.split("**")[1]: line for line in plain_verdicts_markdown(data).splitlines()
             if line.startswith("| **C")}
    assert '*Fragile:*' in plain["C2."] and 'makes the answer "no effect found"' in plain["C2."]
    assert "Fragile" not in plain["C1."]
    unmarked = verdicts_markdown(_verdicts({}))
    assert "†" not in unmarked and "Fragile" not in plain_verdicts_markdown(_verdicts({}))


def test_the_findings_table_marks_f3_when_the_reading_changes_it():
    """On the committed verdicts: F3's badge carries † exactly when the sensitivity reading of F3
    differs from its verdict, and no † without the reading."""
    import copy

    from covid_lib.report.judge import findings_markdown, read_verdicts
    from covid_lib.report.sensitivity import finding_rests_on_collapse_rule

    data = read_verdicts()
    row = next(line for line in findings_markdown(data["findings"], data) if line.startswith("| **F3**"))
    assert ("†" in row) == bool(finding_rests_on_collapse_rule(data, "F3"))
    bare = copy.deepcopy(data)
    bare.pop("collapse_sensitivity", None)
    assert not any("†" in line for line in findings_markdown(bare["findings"], bare))


def test_a_threshold_read_off_validation_turns_a_collapsed_ranking_into_decisions(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([k % 2 for k in range(60)])
    ranks = _record(tmp_path, "ranks", 0.6 + 0.2 * labels + rng.uniform(0, 0.05, 60))  # all >= 0.5, separable
    blind = _record(tmp_path, "blind", 0.6 + rng.uniform(0, 0.3, 60))                   # all >= 0.5, no ranking
    for folder in (ranks, blind):
        pd.DataFrame({"test_set": "CORDA (validation)", "source": "x", "image_id": [f"v{k}" for k in range(20)],
                      "patient_id": [f"v{k}" for k in range(20)], "group_id": [f"v{k}" for k in range(20)],
                      "label": labels[:20], "score": 0.6 + 0.2 * labels[:20]}).to_csv(f"{folder}/val_scores.csv",
                                                                                     index=False)
    m = collapsed_models(pd.DataFrame({"composition": "CORDA", "path": [ranks], "status": ["collapsed"]}))
    assert m["n_val_threshold"] == 1 and m["ba_above_chance_val_threshold"] == 1
    assert m["median_test_ba_val_threshold"] == pytest.approx(1.0)  # the threshold 0.7 separates the test set
    m = collapsed_models(pd.DataFrame({"composition": "CORDA", "path": [blind], "status": ["collapsed"]}))
    assert m["n_val_threshold"] == 1 and m["ba_above_chance_val_threshold"] == 0
    page = sensitivity_markdown({"scales": {"full": {"label": "whole set, 5 seeds", "claims": {}}},
                                 "collapse_sensitivity": {"rule": "keep them", "scales": {"full": {
                                     "models": {"collapsed": 1, "threshold_only": 1, "val_one_sided": 0,
                                                "median_val_auc": 1.0, "median_test_auc": 0.5, **{
                                                    k: m[k] for k in ("n_val_threshold", "ba_above_chance_val_threshold",
                                                                      "median_test_ba_val_threshold")}},
                                     "claims": {}}}}})
    assert "threshold chosen on their validation set" in page and "0 of 1 have a 95% interval" in page
