"""The one seed summary (issue 18): mean ± SD over the seeds that learned, the others counted."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from covid_lib.analysis import seeds as sd


@pytest.fixture
def frame() -> pd.DataFrame:
    """Cell A: seeds 0-2 learned, 3 did not learn, 4 collapsed, 5 failed, 6 expected but absent.
    Cell B: one seed learned, one collapsed. Values of the seeds that did not learn are extreme, so
    that averaging them in would show."""
    a = pd.DataFrame({"cell": "A", "seed": range(6),
                      "status": ["done", "done", "done", "did not learn", "collapsed", "failed"],
                      "auc": [0.71, 0.83, 0.78, 0.10, 0.99, np.nan],
                      "balanced_accuracy": [0.6, 0.7, np.nan, 0.0, 1.0, np.nan]})
    b = pd.DataFrame({"cell": "B", "seed": [0, 1], "status": ["collapsed", "done"], "auc": [0.2, 0.9],
                      "balanced_accuracy": [0.5, 0.8]})
    return pd.concat([a, b], ignore_index=True)


def test_mean_and_sd_over_the_learned_seeds_only(frame):
    s = sd.seed_summary(frame, ["cell"], ["auc", "balanced_accuracy"], seeds=range(7)).set_index("cell")
    learned = np.array([0.71, 0.83, 0.78])  # by hand: seeds 0-2 of cell A
    assert s.loc["A", "auc_mean"] == pytest.approx(learned.sum() / 3)
    assert s.loc["A", "auc_sd"] == pytest.approx(np.sqrt(((learned - learned.mean()) ** 2).sum() / 2))
    assert s.loc["A", "auc_n"] == 3
    # a learned seed without a value leaves that metric only
    assert (s.loc["A", "balanced_accuracy_mean"], s.loc["A", "balanced_accuracy_n"]) == (pytest.approx(0.65), 2)
    assert s.loc["A", "seeds_learned"] == [0, 1, 2]
    assert s.loc["A", "seeds_did_not_learn"] == [3] and s.loc["A", "seeds_collapsed"] == [4]
    assert s.loc["A", "seeds_missing"] == [5, 6]  # failed, and expected without a row
    # one learned seed: a mean, no SD
    assert (s.loc["B", "auc_mean"], s.loc["B", "auc_n"]) == (pytest.approx(0.9), 1) and np.isnan(s.loc["B", "auc_sd"])
    assert s.loc["B", "seeds_collapsed"] == [0] and s.loc["B", "seeds_missing"] == [2, 3, 4, 5, 6]


def test_without_expected_seeds_only_rows_count_as_missing(frame):
    s = sd.seed_summary(frame, ["cell"], ["auc"]).set_index("cell")
    assert s.loc["A", "seeds_missing"] == [5] and s.loc["B", "seeds_missing"] == []


def test_table_is_readable(frame):
    metrics = ["auc", "balanced_accuracy"]
    t = sd.seed_summary_table(sd.seed_summary(frame, ["cell"], metrics, seeds=range(7)), metrics,
                              labels={"auc": "own-test AUC"}).set_index("cell")
    assert list(t.columns) == ["own-test AUC mean ± SD", "BA mean ± SD", "seeds in the mean", "did not learn",
                               "collapsed", "missing"]
    assert t.loc["A", "own-test AUC mean ± SD"] == f"0.77 ± {np.std([0.71, 0.83, 0.78], ddof=1):.2f}"
    assert t.loc["A", "BA mean ± SD"] == "0.65 ± 0.07 (2 seeds)"
    assert t.loc["A", "seeds in the mean"] == "3 (seeds 0, 1, 2)" and t.loc["A", "did not learn"] == "1 (seed 3)"
    assert t.loc["A", "missing"] == "2 (seeds 5, 6)"
    assert t.loc["B", "own-test AUC mean ± SD"] == "0.90 (one seed)" and t.loc["B", "did not learn"] == "0"


def test_nothing_learned_gives_a_dash():
    f = pd.DataFrame({"cell": "A", "seed": [0, 1], "status": ["collapsed", "missing"], "auc": [0.9, np.nan]})
    t = sd.seed_summary_table(sd.seed_summary(f, ["cell"], ["auc"]), ["auc"])
    assert t.loc[0, "AUC mean ± SD"] == "–" and t.loc[0, "seeds in the mean"] == "0"


def test_a_seed_twice_in_a_group_is_refused():
    f = pd.DataFrame({"cell": "A", "seed": [0, 0], "status": ["done", "done"], "auc": [0.7, 0.8]})
    with pytest.raises(ValueError, match="one row a seed"):
        sd.seed_summary(f, ["cell"], ["auc"])


def test_module_example():
    assert doctest.testmod(sd).failed == 0
