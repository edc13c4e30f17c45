"""Seen and unseen sources: train on one source per class, test on held-out images of the same
sources ("seen") and on sources never used in training ("unseen").

Ben Ahmed et al. 2021 (Sec. "Experimental Results", Fig. 4, Table 4) train a frozen ResNet-50 on
one data source per class. Data Split 1: V2-COV19-NII (Hannover, Germany) COVID+ against NIH
pneumonia; seen-source test AUC 1.00, unseen-source AUC 0.38. Data Split 2: BIMCV (Spain) COVID+
against PadChest (Spain) pneumonia, two sources of one regional health system; AUC 0.96 seen,
0.63 unseen. Fine-tuning on 80 images per class of unseen sources then raised the accuracy on
them (Table 4).

Our sources differ (BIMCV, PadChest, CheXpert, COVID-19-AR are not here), so the splits are in
their spirit, drawn from five *parts* (a source, or a source restricted to one label):

- ``hannover COVID+``: the Hannover repository is V2-COV19-NII, Data Split 1's COVID+ source; every
  image is COVID+, so alone it measures **sensitivity only**; many are ICU / supine AP images.
- ``cohen COVID+`` / ``cohen COVID-``: the Cohen collection, frontal views, without the images
  that are copies of Hannover images or were taken at Hannover Medical School (so that Hannover
  stays a separate source). Many hospitals and figures from papers; adults.
- ``kermany COVID-``: children aged 1-5 (Guangzhou): against adult COVID+ images, **age**
  confounds the label; alone it measures **specificity only**.
- ``nih COVID-``: NIH ChestX-ray14 adults (No Finding and Pneumonia); **specificity only**.

Every part keeps the one patient-level split of :func:`covid_lib.data.global_splits`: training
uses the train/val patients of the training parts (classes balanced by subsampling the larger, as
the compositions do), the seen test is their test patients, the unseen test the test patients of
the unseen parts, and adaptation (``adapt`` images per class) draws on the unseen parts'
train/val patients, never on their test patients.

Example:
    >>> SOURCE_SPLITS["U1-hannover-nih"].train
    ('hannover COVID+', 'nih COVID-')
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from covid_lib.data.compose import _hannover_copy, _subsample_larger, at_hannover, global_splits
from covid_lib.data.sources import DataError
from covid_lib.data.splits import SPLITS

#: Version of the rules below, hashed into the run id of every source-split run.
SOURCE_SPLIT_VERSION = 1

#: What each part is (source, label) and what, alone, it can measure.
PARTS: dict[str, tuple[str, int]] = {
    "hannover COVID+": ("hannover", 1),
    "cohen COVID+": ("cohen", 1),
    "cohen COVID-": ("cohen", 0),
    "kermany COVID-": ("kermany", 0),
    "nih COVID-": ("nih", 0),
}
MEASURES: dict[str, str] = {
    "hannover COVID+": "sensitivity only (all COVID+); one hospital (Hannover Medical School), many ICU / supine "
                       "AP images; Data Split 1's COVID+ source (V2-COV19-NII)",
    "cohen COVID+": "sensitivity only; many hospitals and figures from papers, adults; copies of Hannover images "
                    "and images taken at Hannover left out",
    "cohen COVID-": "specificity only; the same collection's COVID- images (other pneumonias, adults); few images",
    "kermany COVID-": "specificity only; children aged 1-5 (Guangzhou): against adult COVID+ images, age "
                      "confounds the label",
    "nih COVID-": "specificity only; NIH ChestX-ray14 adults (No Finding and Pneumonia), selected by a third party",
}


@dataclass(frozen=True)
class SourceSplit:
    """One source split: the parts trained on (one COVID+ and one COVID- part) and the unseen parts.

    Attributes:
        name: registry key (also the ``composition`` of its :class:`~covid_lib.runs.RunSpec`).
        train: ``(COVID+ part, COVID- part)`` trained on; their test patients are the seen test.
        unseen: ``(COVID+ part, COVID- part)`` never trained on; their test patients are the
            unseen test, their train / val patients the adaptation pool.
        spirit: what it stands for in Ben Ahmed et al. 2021.
    """

    name: str
    train: tuple[str, str]
    unseen: tuple[str, str]
    spirit: str

    def __post_init__(self) -> None:
        for parts in (self.train, self.unseen):
            if [PARTS[p][1] for p in parts] != [1, 0]:
                raise ValueError(f"{self.name}: parts must be (COVID+, COVID-), got {parts}")
        if set(self.train) & set(self.unseen):
            raise ValueError(f"{self.name}: a part is both trained on and unseen")

    @property
    def train_sources(self) -> set[str]:
        return {PARTS[p][0] for p in self.train}

    @property
    def unseen_sources(self) -> set[str]:
        return {PARTS[p][0] for p in self.unseen}


SOURCE_SPLITS: dict[str, SourceSplit] = {
    s.name: s
    for s in (
        SourceSplit("U1-hannover-nih", ("hannover COVID+", "nih COVID-"), ("cohen COVID+", "kermany COVID-"),
                    "Data Split 1 with its own two sources (V2-COV19-NII = Hannover against NIH): a different "
                    "hospital per class"),
        SourceSplit("U2-cohen-kermany", ("cohen COVID+", "kermany COVID-"), ("hannover COVID+", "nih COVID-"),
                    "the reverse pairing: a different collection per class, adults against children (the "
                    "pairing of many early COVID papers)"),
        SourceSplit("U3-cohen-cohen", ("cohen COVID+", "cohen COVID-"), ("hannover COVID+", "nih COVID-"),
                    "Data Split 2's idea (both classes from one system): both classes from one collection, "
                    "adults"),
    )
}


def part_rows(splits: pd.DataFrame, part: str) -> pd.DataFrame:
    """The rows of one part of :data:`PARTS` with ``set`` (the part) and ``label`` (COVID) columns."""
    if part not in PARTS:
        raise DataError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    source, label = PARTS[part]
    keep = (splits["source"] == source) & (splits["covid"].astype(float) == label)
    if source == "cohen":
        keep &= splits["frontal"].astype(bool) & ~_hannover_copy(splits) & ~at_hannover(splits)
    rows = splits[keep].copy()
    rows["set"] = part
    rows["label"] = label
    return rows


def source_split_rows(name: str, data_root: str | os.PathLike | None = None, *, seed: int = 0) -> pd.DataFrame:
    """Every image a split uses, with ``set`` (part), ``label``, ``split`` and ``role``.

    ``role`` is ``train`` (train / val patients of the training parts, balanced by subsampling the
    larger class per split), ``seen`` (test patients of the training parts), ``unseen`` (test
    patients of the unseen parts) or ``adapt pool`` (train / val patients of the unseen parts).
    """
    if name not in SOURCE_SPLITS:
        raise DataError(f"unknown source split {name!r}; choose from {', '.join(SOURCE_SPLITS)}")
    s = SOURCE_SPLITS[name]
    splits = global_splits(data_root, seed=seed)
    rng = np.random.default_rng(seed)
    parts = []
    trained = pd.concat([part_rows(splits, p) for p in s.train])
    for split in ("train", "val"):
        parts.append(_subsample_larger(trained[trained["split"] == split], rng).assign(role="train"))
    parts.append(trained[trained["split"] == "test"].assign(role="seen"))
    unseen = pd.concat([part_rows(splits, p) for p in s.unseen])
    parts.append(unseen[unseen["split"] == "test"].assign(role="unseen"))
    parts.append(unseen[unseen["split"] != "test"].assign(role="adapt pool"))
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "source_split", name)
    return out


def adapt_rows(rows: pd.DataFrame, k: int, *, seed: int = 0) -> pd.DataFrame:
    """``k`` images per class from the adaptation pool's train patients (``split`` train) and ``k``
    per class from its val patients (model selection), one image per patient group where possible.

    Args:
        rows: :func:`source_split_rows` of one split.
        k: images per class and split (Ben Ahmed et al.: 80 per class).
    """
    if k < 1:
        raise ValueError(f"adapt needs k >= 1 images per class, got {k}")
    pool = rows[rows["role"] == "adapt pool"]
    picked = []
    for (split, label), g in pool.groupby(["split", "label"], sort=True):
        one = g.groupby("group_id").sample(1, random_state=seed)
        rest = g.drop(one.index)
        order = pd.concat([one.sample(frac=1, random_state=seed), rest.sample(frac=1, random_state=seed)])
        if len(order) < k:
            raise DataError(f"adapt {k}: only {len(order)} {split} images with label {label} in the unseen parts")
        picked.append(order.iloc[:k])
    return pd.concat(picked).assign(role="adapt")


def source_split_counts(data_root: str | os.PathLike | None = None, *, seed: int = 0) -> pd.DataFrame:
    """Images (and patient groups) per split, part and role: the counts table of the chapter.

    Returns one row per ``source_split, role, set, label`` with ``train, val, test`` image counts
    and ``patients`` (patient groups over the three splits).
    """
    out = []
    for name in SOURCE_SPLITS:
        rows = source_split_rows(name, data_root, seed=seed)
        g = rows.groupby(["source_split", "role", "set", "label"], sort=False)
        counts = g["split"].value_counts().unstack(fill_value=0).reindex(columns=list(SPLITS), fill_value=0)
        counts["patients"] = g["group_id"].nunique()
        out.append(counts.reset_index())
    return pd.concat(out, ignore_index=True)
