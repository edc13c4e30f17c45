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
from covid_lib.data.full_copy import FULL_COPY, HELD_OUT, full_copy_splits

#: Labels of the pre-training tasks (paper Sec. III-C; code: three-class Kermany, binary RSNA).
PRETRAIN_LABELS: dict[str, tuple[str, dict]] = {
    "kermany": ("kermany_class", {"normal": 0, "bacteria": 1, "virus": 2}),
    "kermany_full": ("kermany_class", {"normal": 0, "bacteria": 1, "virus": 2}),
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
    """The pre-training set of ``source`` with ``label``: ``kermany`` (ChestXRay, the 960 of the
    working copy), ``kermany_full`` (the whole ChestXRay set, issue 17) or ``nih`` (RSNA).

    Uses the global patient-level split (:func:`covid_lib.data.global_splits`), so images tested in
    any composition are never pre-trained on; ``kermany_full`` uses :func:`full_copy_splits`, which
    leaves out every patient of a composition's validation or test split. Labels: Kermany three
    classes (normal, bacterial, viral), as in the paper's code; NIH pneumonia yes/no (the paper's
    RSNA pneumonia task).
    """
    if source not in PRETRAIN_LABELS:
        raise ValueError(f"unknown pre-training source {source!r}; choose from {', '.join(PRETRAIN_LABELS)}")
    column, mapping = PRETRAIN_LABELS[source]
    if source == FULL_COPY:
        rows = full_copy_splits(data_root, seed=split_seed).query("split != @HELD_OUT").copy()
    else:
        rows = global_splits(data_root, seed=split_seed).query("source == @source").copy()
    rows["label"] = rows[column].map(lambda v: mapping.get(v if isinstance(v, str) else int(v)))
    return rows.dropna(subset=["label"]).astype({"label": int})
