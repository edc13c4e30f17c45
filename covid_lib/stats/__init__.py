"""Interval and test machinery behind :mod:`covid_lib.metrics`.

Every function here works on plain numbers or numpy arrays and knows nothing about images. Every
public name is importable from this package (``from covid_lib.stats import delong_test``); the
submodules point one way, ``intervals`` <- ``delong``, ``intervals`` <- ``bootstrap`` <- ``paired``:

* :mod:`~covid_lib.stats.intervals` -- :func:`z_critical`; :func:`wilson_interval`, the Wilson
  (1927) score interval for a binomial proportion; :func:`log_odds_ratio_interval`, the odds
  ratio with a log-scale (Woolf) interval and the Haldane (1940) / Anscombe (1956) correction.
* :mod:`~covid_lib.stats.delong` -- :func:`delong_covariance`, :func:`delong_auc` and
  :func:`delong_test`: the AUC, its variance and the paired test of two AUCs after DeLong, DeLong
  & Clarke-Pearson (1988), computed with the fast midrank algorithm of Sun & Xu (2014).
* :mod:`~covid_lib.stats.bootstrap` -- :func:`bootstrap_replicates`, :func:`bootstrap_ci` and
  :func:`percentile_interval`: the library's one bootstrap, seeded, vectorised, resampling whole
  groups (patients) when given, with percentile intervals; every statistic is a function of
  per-case resampling weights (:func:`weighted_mean`, :func:`weighted_auc`).
* :mod:`~covid_lib.stats.paired` -- the paired patient-cluster bootstrap of ``metric(a) -
  metric(b)`` for two models on the same images (:func:`paired_cluster_bootstrap`, on several
  test sets and pooled: :func:`paired_cluster_bootstrap_sets`; :func:`bootstrap_p_value`).
"""

from __future__ import annotations

from covid_lib.stats.intervals import OddsRatio, log_odds_ratio_interval, wilson_interval, z_critical
from covid_lib.stats.delong import AucInterval, DeLongTest, delong_auc, delong_covariance, delong_test
from covid_lib.stats.bootstrap import (CELLS, bootstrap_ci, bootstrap_replicates, cell_indicators, group_codes,
                                       percentile_interval, weighted_auc, weighted_mean)
from covid_lib.stats.paired import (PAIRED_METRICS, POOLED, SETS_COLUMNS, PairedDelta, bootstrap_p_value,
                                    paired_cluster_bootstrap, paired_cluster_bootstrap_sets,
                                    paired_cluster_replicates, weighted_metric)

__all__ = [
    "OddsRatio", "log_odds_ratio_interval", "wilson_interval", "z_critical",
    "AucInterval", "DeLongTest", "delong_auc", "delong_covariance", "delong_test",
    "CELLS", "bootstrap_ci", "bootstrap_replicates", "cell_indicators", "group_codes", "percentile_interval",
    "weighted_auc", "weighted_mean",
    "PAIRED_METRICS", "POOLED", "SETS_COLUMNS", "PairedDelta", "bootstrap_p_value", "paired_cluster_bootstrap",
    "paired_cluster_bootstrap_sets", "paired_cluster_replicates", "weighted_metric",
]
