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
               by: Sequence[str] = ("source", "split"), label: str | None = "label",
               strict: bool = False) -> pd.DataFrame:
    """At most ``max_images`` rows per ``by`` cell (default: per source and split), drawn at
    random, stratified by ``label`` (every label keeps at least one row). ``None`` keeps everything:
    the one row cap of the library (runs' ``max_images``, the chapters' samples).

    Args:
        label: the column to stratify by; None (or a column the rows lack) draws plainly.
        strict: the chapters' cap (:func:`covid_lib.report.common.limit_per_source`): a missing
            label is a stratum of its own, a cell never exceeds ``max_images`` (the rounded
            strata are drawn down) and rows keep their order. Without it (the runs' cap, which
            their records depend on), rows without a label are left out, the rounded strata may
            pass ``max_images`` by a row or two, and rows come cell by cell, label by label.
    """
    if max_images is None:
        return rows
    parts = []
    for _, cell in rows.groupby(list(by), sort=False):
        if len(cell) <= max_images:
            parts.append(cell)
        elif label is None or label not in cell:
            parts.append(cell.sample(n=max_images, random_state=seed))
        elif strict:
            strata = cell[label].astype("string").fillna("?")
            share = strata.value_counts(normalize=True)
            chosen = pd.concat([_draw(cell[strata == value], frac, max_images, seed) for value, frac in share.items()])
            parts.append(chosen.sample(n=max_images, random_state=seed) if len(chosen) > max_images else chosen)
        else:
            share = cell[label].value_counts(normalize=True)
            parts += [_draw(g, share[value], max_images, seed) for value, g in cell.groupby(label, sort=True)]
    if not parts:
        return rows.iloc[:0]
    out = pd.concat(parts)
    return rows.loc[sorted(out.index)] if strict else out.loc[~out.index.duplicated()]


def _draw(stratum: pd.DataFrame, share: float, max_images: int, seed: int) -> pd.DataFrame:
    """A stratum's part of a capped cell: its share of ``max_images``, at least one row."""
    return stratum.sample(n=min(len(stratum), max(1, round(share * max_images))), random_state=seed)


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
