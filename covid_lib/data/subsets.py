"""Row subsets for training: the pre-training sets (Sec. III-C) and per-cell caps (smoke profile).

Example:
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"source": ["a"] * 6, "split": ["train"] * 6, "label": [0, 0, 0, 0, 1, 1]})
    >>> limit_rows(rows, 3)["label"].value_counts().sort_index().tolist()
    [2, 1]
"""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

from covid_lib.data.compose import global_splits

#: Labels of the pre-training tasks (paper Sec. III-C; code: three-class Kermany, binary RSNA).
PRETRAIN_LABELS: dict[str, tuple[str, dict]] = {
    "kermany": ("kermany_class", {"normal": 0, "bacteria": 1, "virus": 2}),
    "nih": ("pneumonia", {0: 0, 1: 1}),
}


def limit_rows(rows: pd.DataFrame, max_images: int | None, *, seed: int = 0,
               by: Sequence[str] = ("source", "split"), label: str = "label") -> pd.DataFrame:
    """At most ``max_images`` rows per ``by`` cell (default: per source and split), stratified
    by ``label`` (every label keeps at least one row). ``None`` keeps everything."""
    if max_images is None:
        return rows
    parts = []
    for _, cell in rows.groupby(list(by), sort=False):
        if len(cell) <= max_images:
            parts.append(cell)
            continue
        share = cell[label].value_counts(normalize=True)
        for value, g in cell.groupby(label, sort=True):
            k = min(len(g), max(1, round(share[value] * max_images)))
            parts.append(g.sample(k, random_state=seed))
    return pd.concat(parts).loc[lambda d: ~d.index.duplicated()] if parts else rows.iloc[:0]


def pretrain_rows(source: str, data_root: str | os.PathLike | None = None, *, split_seed: int = 0) -> pd.DataFrame:
    """The pre-training set of ``source`` (``kermany`` = ChestXRay, ``nih`` = RSNA) with ``label``.

    Uses the global patient-level split (:func:`covid_lib.data.global_splits`), so images tested in
    any composition are never pre-trained on. Labels: Kermany three classes (normal, bacterial,
    viral), as in the paper's code; NIH pneumonia yes/no (the paper's RSNA pneumonia task).
    """
    if source not in PRETRAIN_LABELS:
        raise ValueError(f"unknown pre-training source {source!r}; choose from {', '.join(PRETRAIN_LABELS)}")
    column, mapping = PRETRAIN_LABELS[source]
    rows = global_splits(data_root, seed=split_seed).query("source == @source").copy()
    rows["label"] = rows[column].map(lambda v: mapping.get(v if isinstance(v, str) else int(v)))
    return rows.dropna(subset=["label"]).astype({"label": int})
