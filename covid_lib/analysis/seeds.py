"""One metric over training seeds: mean ± SD over the seeds whose model learned, the others counted.

The one home of the rule every chapter follows for repeated runs: a seed whose model did not learn
(best validation AUC under 0.6) or collapsed (its own-test scores on one side of the threshold) is
never averaged in; it is counted beside the mean, as is a seed with no usable record (failed,
missing, or expected but absent). Statuses are :attr:`covid_lib.runs.Record.status`.

Example:
    >>> f = pd.DataFrame({"cell": "A", "seed": [0, 1, 2], "status": ["done", "done", "collapsed"],
    ...                   "auc": [0.7, 0.9, 0.5]})
    >>> seed_summary_table(seed_summary(f, ["cell"], ["auc"], seeds=[0, 1, 2, 3]), ["auc"]).iloc[0].tolist()
    ['A', '0.80 ± 0.14', '2 (seeds 0, 1)', '0', '1 (seed 2)', '1 (seed 3)']
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from covid_lib.metrics import METRIC_LABELS
from covid_lib.runs.records import COLLAPSED, DID_NOT_LEARN, DONE

#: The seed lists of :func:`seed_summary`, in the order tables show them, with their headers.
SEED_COLUMNS: dict[str, str] = {"seeds_learned": "seeds in the mean", "seeds_did_not_learn": "did not learn",
                                "seeds_collapsed": "collapsed", "seeds_missing": "missing"}


def seed_summary(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], *,
                 seeds: Iterable[int] | None = None) -> pd.DataFrame:
    """Per group of ``by``: each metric's mean, SD (ddof 1) and n over the seeds that learned.

    Args:
        frame: one row per (group, seed) with ``seed``, ``status`` and the ``metrics`` columns.
        by: the columns naming a group (a cell of a table).
        metrics: the columns to summarise.
        seeds: the seeds each group should have; one without a row counts as missing.

    Returns:
        The ``by`` columns, the seed lists of :data:`SEED_COLUMNS` (``seeds_learned``: status
        ``done``; ``seeds_missing``: any status but done / did not learn / collapsed, or no row)
        and per metric ``<metric>_mean``, ``<metric>_sd`` (NaN under two values) and ``<metric>_n``
        (learned seeds with a value). Groups keep their order of first appearance.

    Raises:
        ValueError: a group holds the same seed twice (it would be counted twice).
    """
    by, metrics = list(by), list(metrics)
    expected = None if seeds is None else [int(s) for s in seeds]
    rows = []
    for key, g in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        if g["seed"].duplicated().any():
            raise ValueError(f"group {dict(zip(by, key))} holds seeds {sorted(g['seed'].tolist())}: one row a seed")
        state = dict(zip(g["seed"].astype(int), g["status"]))
        learned = g[g["status"] == DONE]
        row = {**dict(zip(by, key)),
               "seeds_learned": sorted(s for s, v in state.items() if v == DONE),
               "seeds_did_not_learn": sorted(s for s, v in state.items() if v == DID_NOT_LEARN),
               "seeds_collapsed": sorted(s for s, v in state.items() if v == COLLAPSED),
               "seeds_missing": sorted({s for s, v in state.items() if v not in (DONE, DID_NOT_LEARN, COLLAPSED)}
                                       | {s for s in (expected or ()) if s not in state})}
        for m in metrics:
            v = learned[m].dropna().astype(float).to_numpy()
            row.update({f"{m}_mean": float(np.mean(v)) if len(v) else np.nan,
                        f"{m}_sd": float(np.std(v, ddof=1)) if len(v) > 1 else np.nan, f"{m}_n": len(v)})
        rows.append(row)
    columns = [*by, *SEED_COLUMNS, *[f"{m}_{s}" for m in metrics for s in ("mean", "sd", "n")]]
    return pd.DataFrame(rows, columns=columns)


def seeds_text(seeds: Sequence[int]) -> str:
    """``0``, ``1 (seed 2)`` or ``3 (seeds 0, 1, 2)``: how many seeds, and which."""
    if not seeds:
        return "0"
    return f"{len(seeds)} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"


def mean_sd_text(mean: float, sd: float, n: int, n_learned: int | None = None, digits: int = 2) -> str:
    """``mean ± SD``; ``mean (one seed)`` for one value; ``–`` for none; ``(k seeds)`` appended when
    fewer than the ``n_learned`` seeds that learned have a value."""
    if not n or pd.isna(mean):
        return "–"
    if n == 1:
        return f"{mean:.{digits}f} (one seed)"
    text = f"{mean:.{digits}f} ± {sd:.{digits}f}"
    return text + (f" ({n} seeds)" if n_learned is not None and n < n_learned else "")


def seed_summary_table(summary: pd.DataFrame, metrics: Sequence[str], *, labels: Mapping[str, str] | None = None,
                       digits: int = 2) -> pd.DataFrame:
    """:func:`seed_summary` for reading: its group columns, ``<label> mean ± SD`` per metric
    (labels default to :data:`covid_lib.metrics.METRIC_LABELS`), then how many seeds are in the
    mean and how many did not learn, collapsed or are missing, each with the seeds named."""
    labels = {**METRIC_LABELS, **(labels or {})}
    by = list(summary.columns[: summary.columns.get_loc("seeds_learned")])
    out = summary[by].copy()
    for m in metrics:
        out[f"{labels.get(m, m)} mean ± SD"] = [
            mean_sd_text(mu, sd, n, len(learned), digits) for mu, sd, n, learned in
            zip(summary[f"{m}_mean"], summary[f"{m}_sd"], summary[f"{m}_n"], summary["seeds_learned"])]
    for column, header in SEED_COLUMNS.items():
        out[header] = summary[column].map(seeds_text)
    return out.reset_index(drop=True)
