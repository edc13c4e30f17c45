"""The whole ChestXRay set (``kermany_full``) as a pre-training source, split with ``kermany`` by patient.

``kermany_full`` holds all 5,840 Kermany images (the paper pre-trains on the ChestXRay set, Sec.
III-C); ``kermany`` holds 960 of them at original resolution and is the COVID- "ChestXRay" pool of
the compositions (Table I). Both folders are copies of one source, under the same ``patient_id``s
(690 of the 960 ``kermany`` files are in both, by name). The rules that let them coexist (issue 17):

1. **One patient-level split across both copies.** A patient of ``kermany`` keeps the split that
   :func:`covid_lib.data.global_splits` gave it; the images of ``kermany_full`` are grouped by
   patient and by identical pixels / pHash 0 within the copy, like every source.
2. **No patient of a composition's validation or test split is pre-trained on.** A group holding a
   ``kermany`` patient of the ``val`` or ``test`` split is left out of pre-training entirely (split
   ``held out``), with that reason.
3. Groups holding only ``kermany`` training patients are pre-training ``train``; groups with no
   ``kermany`` patient are split 85/15 (test) then 85/15 (validation) by patient group, stratified
   by class and seeded like every source, so the pre-training keeps a validation and a test set of
   its own, of about the size of the official test split (624 images), and trains on as many
   images as the patient rules allow (the paper: 5,216, the official training split).

:func:`audit_pretraining` proves rule 2 on the rows a pre-training uses and reports the images that
are the same radiograph in both copies as such (same patient, same split), not as a leak.
"""

from __future__ import annotations

import os

import pandas as pd

from covid_lib.data.compose import global_splits
from covid_lib.data.sources import load_source
from covid_lib.data.splits import SplitLeakError, _linking_pairs, _source_seed, _split_groups, patient_groups
from covid_lib.paths import resolve_data_root

FULL_COPY = "kermany_full"
BASE_COPY = "kermany"
#: The split of the rows kept out of pre-training (rule 2).
HELD_OUT = "held out"
#: Shares of the groups found only in ``kermany_full`` held out for the pre-training's test, then
#: validation (rule 3).
TEST_FRACTION = 0.15
VAL_FRACTION = 0.15
#: Composition splits no pre-training patient may belong to.
EVALUATION_SPLITS = ("val", "test")

_CACHE: dict[tuple[str, int], pd.DataFrame] = {}


def full_copy_splits(data_root: str | os.PathLike | None = None, *, seed: int = 0,
                     progress: bool = False) -> pd.DataFrame:
    """Every ``kermany_full`` image with ``group_id``, ``split`` (train / val / test / held out),
    ``kermany_patient_split`` (the patient's split in ``kermany``, empty when it has none) and
    ``split_reason``.

    Computed once per data root and seed in a process.
    """
    key = (str(resolve_data_root(data_root)), seed)
    if key in _CACHE:
        return _CACHE[key].copy()
    base = global_splits(key[0], seed=seed, progress=progress)
    full = load_source(FULL_COPY, key[0], views="all", progress=progress).manifest.reset_index(drop=True)
    full = assign_copy_splits(full, base, seed=seed, pairs=_linking_pairs(full, progress))
    _CACHE[key] = full
    return full.copy()


def assign_copy_splits(full: pd.DataFrame, base: pd.DataFrame, *, seed: int = 0,
                       pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rules of this module on plain tables: ``full`` (the copy's manifest, with ``patient_id``
    and ``kermany_class``) split consistently with ``base`` (the study's splits, with ``source``,
    ``patient_id``, ``split``); ``pairs``: row positions of ``full`` showing the same picture."""
    full = full.reset_index(drop=True).copy()
    base = base[base["source"] == BASE_COPY]
    base_split = base.groupby("patient_id")["split"].agg(lambda s: ",".join(sorted(set(s))))
    full["group_id"] = patient_groups(full, pairs).map(lambda g: f"{FULL_COPY}/{g}")
    full["kermany_patient_split"] = full["patient_id"].map(base_split).fillna("")
    full["split"], full["split_reason"] = "", ""
    for _, rows in full.groupby("group_id", sort=True):
        seen = set(",".join(rows["kermany_patient_split"]).split(",")) - {""}
        if seen & set(EVALUATION_SPLITS):
            full.loc[rows.index, ["split", "split_reason"]] = [
                HELD_OUT, f"patient in kermany's {'/'.join(sorted(seen & set(EVALUATION_SPLITS)))} split"]
        elif seen:
            full.loc[rows.index, ["split", "split_reason"]] = ["train", "patient in kermany's train split"]
    free = full[full["split"] == ""]
    labels = free.groupby("group_id")["kermany_class"].agg(lambda s: s.mode().max())
    seed_s = _source_seed(seed, FULL_COPY)
    trainval, test = _split_groups(labels, TEST_FRACTION, seed_s)
    train, val = _split_groups(labels[trainval], VAL_FRACTION, seed_s + 1)
    for name, groups in (("train", train), ("val", val), ("test", test)):
        picked = full["group_id"].isin(groups)
        full.loc[picked, "split"] = name
        full.loc[picked, "split_reason"] = "patient only in kermany_full"
    return full


def audit_pretraining(pretrain: pd.DataFrame, splits: pd.DataFrame, *, raise_on_leak: bool = True) -> dict:
    """Check that no pre-training patient is in a composition's validation or test split.

    Args:
        pretrain: the rows a pre-training fits, validates or tests on (``patient_id``, ``source``,
            ``image_id``; e.g. :func:`covid_lib.data.pretrain_rows`).
        splits: the study's splits (:func:`covid_lib.data.global_splits`).
        raise_on_leak: raise :class:`~covid_lib.data.splits.SplitLeakError` on an overlap.

    Returns:
        ``{"leaks": DataFrame of pre-training rows whose patient is in a val/test split,
        "same_radiograph": DataFrame of images present in both copies (same patient, by file name),
        with their split in each, "summary": str}``. Same-radiograph pairs are not leaks when the
        patient's ``kermany`` split is ``train``.
    """
    evaluation = splits[splits["split"].isin(EVALUATION_SPLITS)]
    bad = set(evaluation["patient_id"])
    leaks = pretrain[pretrain["patient_id"].isin(bad)]
    base = splits[splits["source"] == BASE_COPY][["image_id", "patient_id", "split"]]
    copy = pretrain[pretrain["source"] == FULL_COPY][["image_id", "patient_id", "split"]]
    same = copy.merge(base, on=["image_id", "patient_id"], suffixes=("_pretrain", "_kermany"))
    summary = (f"pre-training rows: {len(pretrain)} ({pretrain['patient_id'].nunique()} patients); "
               f"patients in a composition's val/test split: {leaks['patient_id'].nunique()}; "
               f"same radiograph in both copies: {len(same)} (kermany split: "
               + (", ".join(f"{k} {v}" for k, v in same["split_kermany"].value_counts().sort_index().items()) or "none")
               + ")")
    if raise_on_leak and len(leaks):
        raise SplitLeakError(f"pre-training leak: {summary}\n{leaks.head(10).to_dict('records')}")
    return {"leaks": leaks, "same_radiograph": same, "summary": summary}
