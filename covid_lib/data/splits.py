"""Patient-level stratified splits and the leakage audit (paper Sec. IV, Table I).

The paper keeps 70% of the data for training and 30% for testing, then divides the training data
80% / 20% into training and validation sets. Its code split by *image*; here every split is
assigned per *patient group*: patients that share an image (the same file listed under two ids,
copies with identical pixels or an identical perceptual hash, the same image in two sources) are
joined into one group, so no image or patient can be
both trained on and tested. Splits are seeded per source, so a source's split does not depend on
which other sources are loaded, and every composition of the paper's Table I shares them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import pandas as pd
from sklearn.model_selection import train_test_split

from covid_lib.data.dedup import NEAR_DUPLICATE_BITS, cached_image_hashes, duplicate_pairs, image_hashes

SPLITS: tuple[str, ...] = ("train", "val", "test")
TEST_FRACTION = 0.30
VAL_FRACTION = 0.20
#: pHash distance at or under which two images are joined into one patient group. Distances of
#: 2-4 bits already pair unrelated X-rays (e.g. NIH with Shenzhen images), so only 0 links.
LINK_BITS = 0
#: Patients judged by eye to share a radiograph that no hash threshold joins (the near-duplicate
#: audit of the data chapter): Cohen's ``137`` and ``202`` are one 83-year-old man from Italy, the
#: same film cropped and windowed differently, pHash 4 bits apart. They are joined into one group.
JUDGED_SAME_PATIENT: tuple[tuple[str, str], ...] = (("cohen:137", "cohen:202"),)
#: The label each source's split is stratified on.
STRATIFY_BY: dict[str, str] = {
    "cohen": "covid", "hannover": "view", "kermany": "kermany_class", "nih": "pneumonia",
    "montgomery": "tb", "shenzhen": "tb",
}


class SplitLeakError(AssertionError):
    """A patient or an identical image appears in more than one split."""


class _UnionFind:
    def __init__(self, items):
        self.parent = {x: x for x in items}

    def find(self, x):
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def patient_groups(manifest: pd.DataFrame, pairs: pd.DataFrame | None = None,
                   same_patient: tuple[tuple[str, str], ...] = JUDGED_SAME_PATIENT) -> pd.Series:
    """A group id per row: patients joined when they share an image (``pairs`` of row positions)
    or are listed in ``same_patient`` (pairs of patient ids judged to be one person)."""
    patients = manifest["patient_id"].to_numpy()
    uf = _UnionFind(set(patients))
    if pairs is not None:
        for i, j in zip(pairs["i"], pairs["j"]):
            uf.union(patients[i], patients[j])
    present = set(patients)
    for a, b in same_patient:
        if a in present and b in present:
            uf.union(a, b)
    return pd.Series([uf.find(p) for p in patients], index=manifest.index, name="group_id")


def _stratum(manifest: pd.DataFrame) -> pd.Series:
    column = manifest["source"].map(STRATIFY_BY)
    values = [str(row.get(col, "")) if isinstance(col, str) else "" for col, (_, row)
              in zip(column, manifest.iterrows())]
    return pd.Series(values, index=manifest.index)


def _split_groups(labels: pd.Series, fraction: float, seed: int) -> tuple[list, list]:
    """Split group ids (index of ``labels``) into (kept, held out), stratified where possible."""
    groups = labels.index.to_list()
    if len(groups) < 2:
        return groups, []
    counts = labels.value_counts()
    strata = labels.where(labels.map(counts) >= 2, "__rare__")
    if (strata.value_counts() < 2).any() or strata.nunique() > len(groups) * fraction:
        strata = None
    kept, held = train_test_split(groups, test_size=fraction, random_state=seed, stratify=strata)
    return kept, held


def _linking_pairs(manifest: pd.DataFrame, progress: bool) -> pd.DataFrame:
    """Row pairs that must share a split: identical pixels, a pHash distance of 0 (the same
    picture re-encoded), or the same ``image_id`` in two sources (the Cohen collection imported
    images of the Hannover repository under their Hannover names)."""
    hashes = cached_image_hashes(manifest["image_path"], progress=progress)
    pairs = duplicate_pairs(hashes, max_distance=LINK_BITS)[["i", "j"]]
    ids = manifest["image_id"].to_numpy()
    same_id = pd.DataFrame(
        [(i, j) for rows in pd.Series(range(len(ids))).groupby(ids).groups.values() if len(rows) > 1
         for i in rows for j in rows if i < j], columns=["i", "j"])
    return pd.concat([pairs, same_id], ignore_index=True)


def _source_seed(seed: int, source: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(source.encode())) % (2**32)


def assign_splits(
    manifest: pd.DataFrame,
    *,
    seed: int = 0,
    test_fraction: float = TEST_FRACTION,
    val_fraction: float = VAL_FRACTION,
    link_duplicates: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Add ``group_id`` and ``split`` (train / val / test) columns, assigned per patient group.

    Args:
        manifest: rows from :func:`covid_lib.data.load_source` (one or several sources).
        seed: base seed; each source is split with its own seed derived from it.
        test_fraction: share of patient groups held out for testing (paper: 30%).
        val_fraction: share of the remaining groups used for validation (paper: 20%).
        link_duplicates: join patients that share an identical image (pixel hash) into one group.

    Returns:
        A copy of ``manifest`` with ``group_id`` and ``split``.
    """
    out = manifest.reset_index(drop=True).copy()
    pairs = _linking_pairs(out, progress) if link_duplicates else None
    out["group_id"] = patient_groups(out, pairs)
    out["split"] = ""
    strata = _stratum(out)
    for source, rows in out.groupby("source", sort=True):
        group_label = strata[rows.index].groupby(rows["group_id"]).agg(lambda s: s.mode().max())
        group_label = group_label[~group_label.index.isin(out.loc[out["split"] != "", "group_id"])]
        seed_s = _source_seed(seed, source)
        trainval, test = _split_groups(group_label, test_fraction, seed_s)
        train, val = _split_groups(group_label[trainval], val_fraction, seed_s + 1)
        for name, groups in (("train", train), ("val", val), ("test", test)):
            out.loc[out["group_id"].isin(groups), "split"] = name
    return out


@dataclass
class SplitAudit:
    """What :func:`audit_splits` found: patient leaks and duplicate pairs with their splits."""

    patient_leaks: pd.DataFrame
    duplicates: pd.DataFrame

    @property
    def exact_across(self) -> pd.DataFrame:
        d = self.duplicates
        return d[(d["kind"] == "exact") & d["across_splits"]]

    @property
    def near_across(self) -> pd.DataFrame:
        d = self.duplicates
        return d[(d["kind"] == "near") & d["across_splits"]]

    def summary(self) -> str:
        d = self.duplicates
        within = d[~d["across_splits"]]
        return (
            f"patients in more than one split: {len(self.patient_leaks)}; "
            f"exact duplicates: {int((within['kind'] == 'exact').sum())} within a split, "
            f"{len(self.exact_across)} across splits; near duplicates (pHash <= {NEAR_DUPLICATE_BITS} bits): "
            f"{int((within['kind'] == 'near').sum())} within, {len(self.near_across)} across"
        )


def audit_splits(
    df: pd.DataFrame,
    *,
    max_distance: int = NEAR_DUPLICATE_BITS,
    raise_on_leak: bool = True,
    progress: bool = False,
    cache: bool = True,
    hashes: pd.DataFrame | None = None,
) -> SplitAudit:
    """Check that no patient and no identical image crosses splits; report near duplicates.

    Args:
        df: rows with ``patient_id``, ``split``, ``image_path`` (and ``image_id``, ``source``).
        max_distance: pHash Hamming distance at or under which images count as near duplicates.
        raise_on_leak: raise :class:`SplitLeakError` when a patient is in two splits or an exact
            duplicate image is in two splits. Near duplicates across splits are only reported:
            they may be two acquisitions of one patient under two ids, or two similar patients.
        cache: reuse and extend the hash cache (:func:`cached_image_hashes`); False hashes every
            image afresh and writes nothing (a user's dataset in :mod:`covid_lib.audit`).
        hashes: the images' hashes computed before (:func:`~covid_lib.data.dedup.image_hashes`,
            one row per row of ``df``, in its order; e.g. the same images under other splits):
            nothing is hashed then.

    Returns:
        :class:`SplitAudit` with the leaking patients and every duplicate pair.
    """
    df = df.reset_index(drop=True)
    per_patient = df.groupby("patient_id")["split"].agg(lambda s: sorted(set(s)))
    leaks = per_patient[per_patient.map(len) > 1].rename("splits").reset_index()
    if hashes is None:
        hasher = cached_image_hashes if cache else image_hashes
        hashes = hasher(list(df["image_path"]), progress=progress)
    elif list(hashes["image_path"]) != [str(p) for p in df["image_path"]]:
        raise ValueError("hashes must have one row per image of df, in df's order")
    pairs = duplicate_pairs(hashes, max_distance=max_distance)
    cols = ["source", "image_id", "patient_id", "split"]
    left = df.loc[pairs["i"], cols].reset_index(drop=True).add_suffix("_a")
    right = df.loc[pairs["j"], cols].reset_index(drop=True).add_suffix("_b")
    dups = pd.concat([left, right, pairs[["distance", "kind"]].reset_index(drop=True)], axis=1)
    dups["across_splits"] = dups["split_a"] != dups["split_b"]
    dups["same_patient"] = dups["patient_id_a"] == dups["patient_id_b"]
    audit = SplitAudit(leaks, dups)
    if raise_on_leak and (len(leaks) or len(audit.exact_across)):
        raise SplitLeakError(
            f"split leakage: {audit.summary()}\n"
            f"patients: {leaks.head(10).to_dict('records')}\n"
            f"exact duplicates across splits: {audit.exact_across.head(10).to_dict('records')}"
        )
    return audit
