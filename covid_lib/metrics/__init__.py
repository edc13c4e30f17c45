"""Binary classification metrics with confidence intervals (COVID+ = positive class).

The paper (Tartaglione et al. 2020, Sec. IV) evaluates every trained model with accuracy, AUC,
sensitivity, specificity, F-score, balanced accuracy (BA) and the diagnostic odds ratio (DOR),
"for every other metric [than AUC], the classification threshold is set to 0.5". It reports
point values only; here each metric comes with a ``1 - alpha`` interval and the confusion
counts behind it:

=====================  =====================================================================
metric                 interval (independent images: no ``groups``, or one image per group)
=====================  =====================================================================
sensitivity            Wilson (1927) score interval on tp / (tp + fn)
specificity            Wilson on tn / (tn + fp)
accuracy               Wilson on (tp + tn) / n
AUC                    DeLong et al. (1988), fast midrank algorithm of Sun & Xu (2014), on the
                       logit scale (see :func:`covid_lib.stats.delong_auc`)
DOR                    (tp tn) / (fp fn), log-scale (Woolf) interval; when any cell is 0 the
                       Haldane (1940) / Anscombe (1956) correction adds 0.5 to every cell and
                       the estimate says so (the paper prints "inf" there)
balanced accuracy      percentile bootstrap over images
F-score (F1, COVID+)   percentile bootstrap over images
=====================  =====================================================================

When ``groups`` (patient ids) repeat - a patient with several images, as in the COVID
collection (about 1.8 images per patient) - the images are not independent and the formulas
above would be too narrow. Then *every* metric's interval comes from one cluster bootstrap
(:func:`covid_lib.stats.bootstrap_replicates`) that resamples patients with all their images;
each estimate's ``method`` says which interval it carries, e.g. ``"Wilson"``,
``"DeLong, logit"`` or ``"cluster bootstrap (n_boot=2000, 311 groups)"``.

Threshold rule: an image is predicted COVID+ when ``y_score >= threshold``. The default 0.5 is
the paper's; a tuned threshold must be chosen on *validation* data with
:func:`choose_threshold` and then passed as ``threshold=`` when scoring the test set.

Example
-------
>>> t = choose_threshold(y_val, p_val, criterion="youden")        # doctest: +SKIP
>>> m = binary_metrics(y_test, p_test, threshold=t, groups=patient_ids)  # doctest: +SKIP
>>> m.sensitivity.format()                                         # doctest: +SKIP
'0.91 [0.80, 0.96]'

The package's modules: :mod:`~covid_lib.metrics.types` (:data:`METRICS`, :data:`METRIC_LABELS`,
:class:`Estimate`, :func:`format_estimate`, :class:`ConfusionCounts`, :class:`BinaryMetrics`),
:mod:`~covid_lib.metrics.validation` (the input checks), :mod:`~covid_lib.metrics.thresholds`
(:func:`confusion_counts`, :func:`choose_threshold`), :mod:`~covid_lib.metrics.estimates`
(:func:`auc_estimate`, :func:`binary_metrics`, :func:`macro_auc`, :func:`mean_estimate`) and
:mod:`~covid_lib.metrics.collapse` (:func:`collapse_status`, :func:`score_spread`); they import one
way (``types``, ``validation`` <- ``thresholds`` <- ``estimates``; ``validation`` <- ``collapse``),
and every name is importable from here.
"""

from __future__ import annotations

from covid_lib.metrics.types import (METRIC_LABELS, METRICS, BinaryMetrics, ConfusionCounts, Estimate,
                                     format_estimate)
from covid_lib.metrics.thresholds import THRESHOLD_CRITERIA, choose_threshold, confusion_counts
from covid_lib.metrics.estimates import auc_estimate, binary_metrics, macro_auc, mean_estimate
from covid_lib.metrics.collapse import COLLAPSE_MIN_SPREAD, COLLAPSE_THRESHOLD, collapse_status, score_spread
from covid_lib.stats import DeLongTest, delong_test  # the one paired DeLong test, re-exported

#: Every public name of the package (each submodule's).
__all__ = [
    "METRICS", "METRIC_LABELS", "Estimate", "ConfusionCounts", "BinaryMetrics", "DeLongTest",
    "auc_estimate", "binary_metrics", "confusion_counts", "choose_threshold", "delong_test", "format_estimate",
    "collapse_status", "THRESHOLD_CRITERIA", "COLLAPSE_THRESHOLD", "COLLAPSE_MIN_SPREAD", "macro_auc",
    "mean_estimate", "score_spread",
]
