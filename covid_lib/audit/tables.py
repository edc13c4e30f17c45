"""The audit page's tables, for reading: each measure as one estimate with its interval, and the
duplicate pairs by file name, those that matter first.

The CSV files the audit writes (``findings.csv``, ``duplicates.csv``) keep every column at full
precision; these tables only choose, order and format what the page shows (with
:func:`covid_lib.report.common.styled`, as the book's chapters do).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Iterable

import pandas as pd

from covid_lib.report.common import styled

#: The estimate column of :func:`measures`: the value with its 95% patient-level interval.
ESTIMATE = "estimate [95% CI]"
#: The measure columns a section's table shows, in this order, when the findings hold them.
MEASURE_COLUMNS = ("measure", "target", "metric", ESTIMATE, "chance", "flag", "n_images", "note")
#: The duplicate-pair columns :func:`duplicate_pairs` shows, in this order, and their headers (whether a
#: pair crosses splits, or is one patient's, reads off the split and patient columns).
PAIR_COLUMNS = {"image a": "image a", "source_a": "source a", "patient_id_a": "patient a", "split_a": "split a",
                "label_a": "label a", "image b": "image b", "source_b": "source b", "patient_id_b": "patient b",
                "split_b": "split b", "label_b": "label b", "match": "match (pHash bits)"}


def estimate_text(metric: str, value: float, low: float, high: float) -> str:
    """``"0.87 [0.81, 0.91]"``, or per cent for a share (``"0.5% [0.1%, 1.8%]"``), as the findings'
    sentences write them; ``"–"`` without a value.

    Example:
        >>> estimate_text("share", 0.004914, 0.001349, 0.017738)
        '0.5% [0.1%, 1.8%]'
    """
    if pd.isna(value):
        return "–"
    fmt = "{:.1%}" if metric == "share" else "{:.2f}"
    if pd.isna(low) or pd.isna(high):
        return fmt.format(value)
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def measures(findings: pd.DataFrame, sections: Iterable[str], columns: Iterable[str] = MEASURE_COLUMNS):
    """The rows of ``findings`` (:func:`covid_lib.audit.rank_findings`) in ``sections``, in the
    findings' order, with value, low and high joined into :data:`ESTIMATE`; the columns of
    ``columns`` that the rows hold. A styled table."""
    rows = findings[findings["section"].isin(list(sections))].copy()
    rows[ESTIMATE] = [estimate_text(m, v, lo, hi) for m, v, lo, hi in
                      zip(rows["metric"], rows["value"], rows["low"], rows["high"])]
    shown = [c for c in columns if c in rows.columns]
    return styled(rows[shown].reset_index(drop=True), nowrap=[ESTIMATE])


def _in_patient_ids(pairs: pd.DataFrame, side: str) -> bool:
    """Whether every patient id of ``side`` (``a`` or ``b``) starts with its source (``shenzhen:0534``),
    so that a source column would repeat it."""
    if f"patient_id_{side}" not in pairs.columns:
        return False
    return all(str(p).startswith(f"{s}:") for s, p in zip(pairs[f"source_{side}"], pairs[f"patient_id_{side}"]))


def duplicate_pairs(pairs: pd.DataFrame, n: int = 30):
    """At most ``n`` duplicate pairs (:func:`covid_lib.audit.run_audit`'s ``duplicates``), those
    under two labels first, then those across splits, exact before near, closest first; each image
    by its file name (``duplicates.csv`` keeps the paths), and its source only where its patient id
    does not already name it. A styled table, or a one-line note when there is no pair."""
    if pairs.empty:
        return styled(pd.DataFrame({"duplicate pairs": ["none found"]}))
    out = pairs.copy()
    if {"label_a", "label_b"} <= set(out.columns):
        out["_other_label"] = out["label_a"] != out["label_b"]
    order = [(k, up) for k, up in (("_other_label", False), ("across_splits", False), ("kind", True),
                                   ("distance", True)) if k in out.columns]
    if order:
        out = out.sort_values([k for k, _ in order], ascending=[up for _, up in order], kind="stable")
    for side in ("a", "b"):
        out[f"image {side}"] = [PurePath(str(p)).name for p in out[f"image_id_{side}"]]
    if {"kind", "distance"} <= set(out.columns):
        out["match"] = [f"{k} ({d})" for k, d in zip(out["kind"], out["distance"])]
    shown = [c for c in PAIR_COLUMNS
             if c in out.columns and not (c.startswith("source_") and _in_patient_ids(out, c[-1]))]
    caption = f"the first {n} of {len(out)} pairs (all in duplicates.csv)" if len(out) > n else None
    table = out[shown].head(n).rename(columns=PAIR_COLUMNS).reset_index(drop=True)
    return styled(table, caption=caption)
